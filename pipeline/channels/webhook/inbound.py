"""Generic webhooks (CRM, ticketing), inbound: per-source HMAC and a minimal contract.

``POST /v1/webhooks/{source}`` with header ``X-Signature-256: sha256=<hex>``, the hex
HMAC-SHA256 of the raw body with that source's secret. The body is a JSON object with:

- ``event`` (string, required): what happened, e.g. ``ticket.resolved``;
- ``conversation_id`` (string, required): the conversation it concerns;
- ``id`` (string, optional): the source's delivery id; a resend with the same id gets
  the same event id, so it is recognised as a retry;
- anything else: kept verbatim in ``payload_json`` for the webhooks service's rules.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from pipeline.channels.inbound import (
    Inbound,
    InboundRejected,
    Parsed,
    check_signature,
    json_object,
    stable_event_id,
    validate,
)

SIGNATURE_HEADER = "X-Signature-256"

Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=256)]


class WebhookCall(BaseModel):
    """The fields every webhook body must have; any other field is passed on as is."""

    model_config = ConfigDict(extra="allow", frozen=True)

    event: Text = Field(description="The source's name for what happened, e.g. ticket.resolved.")
    conversation_id: Text = Field(description="Conversation the event concerns.")
    id: Text | None = Field(None, description="The source's delivery id, to recognise resends.")


def secret_for(source: str, secrets: Mapping[str, str]) -> str:
    """The source's HMAC secret; 404 for a source nobody configured."""
    secret = secrets.get(source)
    if secret is None:
        raise InboundRejected(404, f"unknown webhook source {source!r}")
    return secret


def verify(secret: str, signature: str | None, body: bytes) -> None:
    """Raise 401 unless ``X-Signature-256`` signs ``body`` with the source's secret."""
    check_signature(signature, "sha256=", secret, body)


def parse(source: str, body: bytes, tenant: str) -> Parsed:
    """The webhook_received for a verified call."""
    call = validate(WebhookCall, json_object(body))
    event_id = stable_event_id("webhook", source, call.id) if call.id else None
    data = {
        "source": source,
        "event_name": call.event,
        "payload_json": body.decode("utf-8"),
        "external_id": call.id,
    }
    return Parsed(
        (Inbound("webhook_received", call.conversation_id, tenant, data, "webhook", event_id),)
    )
