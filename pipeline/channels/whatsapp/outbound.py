"""WhatsApp replies through the Cloud API: ``POST {base}/{phone_number_id}/messages``.

A reply to a known message quotes it (``context.message_id``). Graph API throttling
errors come back as HTTP 400 with an error code; those codes are retried.
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

# Graph API throttling: app rate limit, business account rate limit, cloud API rate
# limit, pair (sender/recipient) rate limit.
THROTTLING_CODES = frozenset({4, 80007, 130429, 131056})


class WhatsAppSender:
    """Sends a text message to the phone number in ``reply_to.address``."""

    def __init__(self, settings: DeliverySettings, client: httpx.AsyncClient) -> None:
        base = settings.whatsapp_base_url.rstrip("/")
        self.phone_number_id = settings.whatsapp_phone_number_id
        self.url = f"{base}/{self.phone_number_id}/messages"
        self.token = settings.whatsapp_token
        self.client = client

    async def send(self, response: Event) -> Outcome:
        if self.token is None or not self.phone_number_id:
            return PermanentFailure(
                "WhatsApp is not configured (delivery.whatsapp_token, "
                "delivery.whatsapp_phone_number_id)"
            )
        body: dict[str, object] = {
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": response["reply_to"]["address"],
            "type": "text",
            "text": {"preview_url": False, "body": response["text"]},
        }
        if response.get("in_reply_to"):
            body["context"] = {"message_id": response["in_reply_to"]}
        headers = {
            "Authorization": f"Bearer {self.token.get_secret_value()}",
            IDEMPOTENCY_KEY: str(response.id),
        }
        answer = await post_json(self.client, self.url, body, headers)
        if not isinstance(answer, httpx.Response):
            return answer
        failure = classify_status(answer)
        if isinstance(failure, PermanentFailure) and _throttled(answer):
            return Retryable(failure.error, failure.http_status)
        if failure is not None:
            return failure
        messages = (json_body(answer) or {}).get("messages") or [{}]
        provider_id = messages[0].get("id") if isinstance(messages[0], dict) else None
        return Sent(str(provider_id) if provider_id is not None else None, answer.status_code)


def _throttled(answer: httpx.Response) -> bool:
    error = (json_body(answer) or {}).get("error")
    return isinstance(error, dict) and error.get("code") in THROTTLING_CODES
