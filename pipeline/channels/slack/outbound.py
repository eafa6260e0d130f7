"""Slack replies through the Web API's ``chat.postMessage``.

Slack answers HTTP 200 with ``{"ok": false, "error": ...}`` for most failures:
``ratelimited`` is worth a retry, every other error is not (a retry after an unknown
error could post twice: Slack has no idempotency key). HTTP 429 and 5xx are retried.
"""

from __future__ import annotations

import httpx

from pipeline.channels.outbound import (
    IDEMPOTENCY_KEY,
    Outcome,
    PermanentFailure,
    Retryable,
    Sent,
    classify_status,
    json_body,
    post_json,
)
from pipeline.config.sections import DeliverySettings
from pipeline.events.model import Event
from pipeline.retry import parse_retry_after

RETRYABLE_ERRORS = frozenset({"ratelimited"})


class SlackSender:
    """Posts a response into its Slack channel, in the thread when there is one."""

    def __init__(self, settings: DeliverySettings, client: httpx.AsyncClient) -> None:
        self.url = f"{settings.slack_base_url.rstrip('/')}/chat.postMessage"
        self.token = settings.slack_bot_token
        self.client = client

    async def send(self, response: Event) -> Outcome:
        if self.token is None:
            return PermanentFailure("Slack bot token is not configured (delivery.slack_bot_token)")
        address = response["reply_to"]
        body: dict[str, object] = {"channel": address["address"], "text": response["text"]}
        if address.get("thread_id"):
            body["thread_ts"] = address["thread_id"]
        headers = {
            "Authorization": f"Bearer {self.token.get_secret_value()}",
            IDEMPOTENCY_KEY: str(response.id),
        }
        answer = await post_json(self.client, self.url, body, headers)
        if not isinstance(answer, httpx.Response):
            return answer
        failure = classify_status(answer)
        if failure is not None:
            return failure
        data = json_body(answer)
        if data is None:
            return PermanentFailure(f"Slack answered {answer.status_code} without JSON")
        if data.get("ok") is True:
            ts = data.get("ts")
            return Sent(str(ts) if ts is not None else None, answer.status_code)
        error = str(data.get("error") or "unknown_error")
        if error in RETRYABLE_ERRORS:
            retry_after = parse_retry_after(answer.headers.get("Retry-After"))
            return Retryable(f"slack: {error}", answer.status_code, retry_after)
        return PermanentFailure(f"slack: {error}", answer.status_code)
