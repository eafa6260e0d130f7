"""Web chat replies: POST JSON to the conversation's callback URL.

The body is ``{conversation_id, response_id, text, in_reply_to}``; the
``Idempotency-Key`` header is the response event id, so a receiver recognises the repeat
that a crash between sending and recording can cause.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import httpx

from pipeline.events.model import Event
from pipeline.services.delivery.outcome import (
    IDEMPOTENCY_KEY,
    Outcome,
    PermanentFailure,
    Sent,
    classify_status,
    json_body,
    post_json,
)


class WebSender:
    """Sends a response to the callback URL in its ``reply_to.address``."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client

    async def send(self, response: Event) -> Outcome:
        url = response["reply_to"]["address"]
        if urlsplit(url).scheme not in ("http", "https"):
            return PermanentFailure(f"web callback {url!r} is not an http(s) URL")
        body = {
            "conversation_id": response.conversation_id,
            "response_id": str(response.id),
            "text": response["text"],
            "in_reply_to": response.get("in_reply_to"),
        }
        answer = await post_json(self.client, url, body, {IDEMPOTENCY_KEY: str(response.id)})
        if not isinstance(answer, httpx.Response):
            return answer
        failure = classify_status(answer)
        if failure is not None:
            return failure
        data = json_body(answer) or {}
        provider_id = data.get("id") or data.get("message_id")
        return Sent(str(provider_id) if provider_id is not None else None, answer.status_code)
