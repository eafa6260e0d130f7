"""Slack replies through the Web API's ``chat.postMessage``.

Slack answers HTTP 200 with ``{"ok": false, "error": ...}`` for most failures:
``ratelimited`` is worth a retry, every other error is not (a retry after an unknown
error could post twice: Slack has no idempotency key). HTTP 429 and 5xx are retried.

Slack ignores idempotency keys, so each message carries its response id in its message
metadata (``metadata``: event type ``pipeline_response``, payload ``{"response_id"}``).
When it is uncertain whether an attempt arrived (the service stopped, or the request got
no answer), :meth:`SlackSender.find_sent` looks for that id in the conversation's recent
messages (``conversations.history``, or ``conversations.replies`` in a thread, with
``include_all_metadata``) before posting again. Reading them needs the history scope of
the conversation type (``channels:history``, ``groups:history``, ``im:history``,
``mpim:history``).
"""

from __future__ import annotations

from typing import Any

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
    transport_failure,
)
from pipeline.config.sections import DeliverySettings
from pipeline.errors import EgressRefused
from pipeline.events.model import Event
from pipeline.retry import parse_retry_after

RETRYABLE_ERRORS = frozenset({"ratelimited"})
METADATA_EVENT_TYPE = "pipeline_response"
# The lookup reads the messages posted since the attempt, less this margin for clocks
# that disagree, newest first, a page at a time, at most this many pages.
LOOKUP_MARGIN_SECONDS = 120.0
LOOKUP_PAGE = 200
LOOKUP_PAGES = 5


class SlackSender:
    """Posts a response into its Slack channel, in the thread when there is one."""

    def __init__(self, settings: DeliverySettings, client: httpx.AsyncClient) -> None:
        self.base = settings.slack_base_url.rstrip("/")
        self.url = f"{self.base}/chat.postMessage"
        self.token = settings.slack_bot_token
        self.client = client

    async def send(self, response: Event) -> Outcome:
        if self.token is None:
            return PermanentFailure("Slack bot token is not configured (delivery.slack_bot_token)")
        address = response["reply_to"]
        body: dict[str, object] = {
            "channel": address["address"],
            "text": response["text"],
            "metadata": {
                "event_type": METADATA_EVENT_TYPE,
                "event_payload": {"response_id": str(response.id)},
            },
        }
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

    async def find_sent(
        self, response: Event, since_ms: int
    ) -> Sent | Retryable | PermanentFailure | None:
        """The message carrying ``response``'s id in its metadata, posted since
        ``since_ms`` (less a margin), if the conversation has it."""
        if self.token is None:
            return PermanentFailure("Slack bot token is not configured (delivery.slack_bot_token)")
        address = response["reply_to"]
        thread = address.get("thread_id")
        params: dict[str, str] = {
            "channel": str(address["address"]),
            "include_all_metadata": "true",
            "limit": str(LOOKUP_PAGE),
            "oldest": f"{max(0.0, since_ms / 1000 - LOOKUP_MARGIN_SECONDS):.6f}",
        }
        method = "conversations.history"
        if thread:
            method = "conversations.replies"
            params["ts"] = str(thread)
        headers = {"Authorization": f"Bearer {self.token.get_secret_value()}"}
        wanted = str(response.id)
        for _ in range(LOOKUP_PAGES):
            try:
                answer = await self.client.get(
                    f"{self.base}/{method}", params=params, headers=headers
                )
            except EgressRefused as exc:
                return PermanentFailure(str(exc))
            except httpx.HTTPError as exc:
                return transport_failure(exc)
            data = _answer_data(answer, method)
            if not isinstance(data, dict):
                return data
            for message in data.get("messages") or ():
                if isinstance(message, dict) and _response_id(message) == wanted:
                    ts = message.get("ts")
                    return Sent(str(ts) if ts is not None else None, answer.status_code)
            cursor = (data.get("response_metadata") or {}).get("next_cursor")
            if not data.get("has_more") or not cursor:
                return None
            params["cursor"] = str(cursor)
        return None


def _answer_data(
    answer: httpx.Response, method: str
) -> dict[str, Any] | Retryable | PermanentFailure:
    failure = classify_status(answer)
    if failure is not None:
        return failure
    data = json_body(answer)
    if data is None:
        return PermanentFailure(f"Slack answered {method} without JSON")
    if data.get("ok") is True:
        return data
    error = str(data.get("error") or "unknown_error")
    if error in RETRYABLE_ERRORS:
        retry_after = parse_retry_after(answer.headers.get("Retry-After"))
        return Retryable(f"slack {method}: {error}", answer.status_code, retry_after)
    return PermanentFailure(f"slack {method}: {error}", answer.status_code)


def _response_id(message: dict[str, Any]) -> str | None:
    metadata = message.get("metadata")
    if not isinstance(metadata, dict) or metadata.get("event_type") != METADATA_EVENT_TYPE:
        return None
    payload = metadata.get("event_payload")
    value = payload.get("response_id") if isinstance(payload, dict) else None
    return str(value) if value is not None else None
