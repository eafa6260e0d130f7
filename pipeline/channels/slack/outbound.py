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

An answer being written is previewed in one message (:meth:`SlackSender.preview`, its
stream id in the metadata), which :meth:`SlackSender.update` rewrites as it grows and
finally with the answer itself (its response id then in the metadata, so the lookup finds
it as that response's message); :meth:`SlackSender.delete` removes a preview whose stream
ended without an answer.
"""

from __future__ import annotations

from collections.abc import Mapping
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
PREVIEW_EVENT_TYPE = "pipeline_preview"
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

    async def preview(self, address: Mapping[str, Any], text: str, stream_id: str) -> Outcome:
        """Post the first words of an answer being written (``Sent`` with its ts)."""
        body: dict[str, object] = {
            "channel": address["address"],
            "text": text,
            "metadata": {
                "event_type": PREVIEW_EVENT_TYPE,
                "event_payload": {"stream_id": stream_id},
            },
        }
        if address.get("thread_id"):
            body["thread_ts"] = address["thread_id"]
        return await self._call("chat.postMessage", body)

    async def update(
        self, channel: str, ts: str, text: str, response_id: str | None = None
    ) -> Outcome:
        """Rewrite the message ``ts`` of ``channel`` with ``text``; with ``response_id``
        it becomes that response's message (its id in the metadata)."""
        body: dict[str, object] = {"channel": channel, "ts": ts, "text": text}
        if response_id is not None:
            body["metadata"] = {
                "event_type": METADATA_EVENT_TYPE,
                "event_payload": {"response_id": response_id},
            }
        return await self._call("chat.update", body)

    async def delete(self, channel: str, ts: str) -> Outcome:
        """Remove the message ``ts`` of ``channel``."""
        return await self._call("chat.delete", {"channel": channel, "ts": ts})

    async def _call(self, method: str, body: dict[str, object]) -> Outcome:
        if self.token is None:
            return PermanentFailure("Slack bot token is not configured (delivery.slack_bot_token)")
        headers = {"Authorization": f"Bearer {self.token.get_secret_value()}"}
        answer = await post_json(self.client, f"{self.base}/{method}", body, headers)
        if not isinstance(answer, httpx.Response):
            return answer
        data = _answer_data(answer, method)
        if not isinstance(data, dict):
            return data
        ts = data.get("ts")
        return Sent(str(ts) if ts is not None else None, answer.status_code)

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
        wanted = (METADATA_EVENT_TYPE, "response_id", str(response.id))
        return await self._find(response["reply_to"], wanted, since_ms)

    async def find_preview(
        self, response: Event, stream_id: str, since_ms: int
    ) -> Sent | Retryable | PermanentFailure | None:
        """The preview message of the stream ``stream_id`` (of ``response``'s
        conversation), posted since ``since_ms``, if there is one."""
        wanted = (PREVIEW_EVENT_TYPE, "stream_id", stream_id)
        return await self._find(response["reply_to"], wanted, since_ms)

    async def _find(
        self, address: Mapping[str, Any], wanted: tuple[str, str, str], since_ms: int
    ) -> Sent | Retryable | PermanentFailure | None:
        if self.token is None:
            return PermanentFailure("Slack bot token is not configured (delivery.slack_bot_token)")
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
                if isinstance(message, dict) and _metadata_value(message, wanted):
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


def _metadata_value(message: dict[str, Any], wanted: tuple[str, str, str]) -> bool:
    """Whether ``message``'s metadata is of ``wanted``'s event type and carries its value
    under its key."""
    event_type, key, value = wanted
    metadata = message.get("metadata")
    if not isinstance(metadata, dict) or metadata.get("event_type") != event_type:
        return False
    payload = metadata.get("event_payload")
    found = payload.get(key) if isinstance(payload, dict) else None
    return found is not None and str(found) == value
