"""Generic webhooks (CRM, ticketing), inbound: signed, fresh, addressed within a tenant.

``POST /v1/webhooks/{source}`` with two headers, in the style of Stripe's and Slack's
schemes:

- ``X-Webhook-Timestamp``: when the call was signed, Unix time in seconds;
- ``X-Signature-256: sha256=<hex>``: the hex HMAC-SHA256, with the source's secret, of
  ``<timestamp>.<raw body>`` (the timestamp header's value, a dot, the body's bytes).

A call whose timestamp is more than five minutes (``webhook_tolerance_seconds``) from
the gateway's clock is refused, so a captured call cannot be replayed later. The body
is a JSON object with:

- ``event`` (string, required): what happened, e.g. ``ticket.resolved``;
- ``conversation_id`` (string, required): the conversation it concerns, as the gateway
  reported it (e.g. ``web:<tenant>:<name>``);
- ``id`` (string, required): the source's delivery id. The event id derives from
  (source, id), and the webhooks service records the ids it handled in a compacted
  topic, so a resend, retry or replay of one delivery yields one event downstream;
- ``tenant`` (string): whose conversation it is; may be left out when the source
  serves one tenant;
- anything else: kept verbatim in ``payload_json`` for the webhooks service's rules.

Each source is configured with the tenants (and optionally conversation-id prefixes)
it may address, and a channel's conversation (web, Slack, WhatsApp, email) must belong
to the call's tenant by the channels' own settings; anything else is refused with 403
and the reason (:func:`pipeline.channels.tenancy.check_addressable`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from pipeline.channels.inbound import (
    Inbound,
    Parsed,
    check_signature,
    hmac_sha256_hex,
    json_object,
    stable_event_id,
    validate,
)
from pipeline.channels.tenancy import ChannelOwners, check_addressable
from pipeline.errors import InboundRejected

SIGNATURE_HEADER = "X-Signature-256"
TIMESTAMP_HEADER = "X-Webhook-Timestamp"
MAX_TIMESTAMP_DIGITS = 12  # seconds until the year 33658; longer is not a time

Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=256)]


class WebhookCall(BaseModel):
    """The fields every webhook body must have; any other field is passed on as is."""

    model_config = ConfigDict(extra="allow", frozen=True)

    event: Text = Field(description="The source's name for what happened, e.g. ticket.resolved.")
    conversation_id: Text = Field(description="Conversation the event concerns.")
    id: Text = Field(
        description="The source's delivery id; a resend with the same id is one event."
    )
    tenant: Text | None = Field(
        None, description="Tenant of the conversation; optional when the source serves one."
    )


@dataclass(frozen=True, slots=True)
class Source:
    """What the gateway knows of a configured source."""

    secret: str
    tenants: Sequence[str]
    prefixes: Sequence[str] = ()


def source_for(name: str, sources: Mapping[str, Source]) -> Source:
    """The configured source; 404 for a source nobody configured."""
    source = sources.get(name)
    if source is None:
        raise InboundRejected(404, f"unknown webhook source {name!r}")
    return source


def signed_message(timestamp: str, body: bytes) -> bytes:
    """What the signature covers: ``<timestamp>.<body>``."""
    return timestamp.encode() + b"." + body


def signature_headers(secret: str, body: bytes, now: float) -> dict[str, str]:
    """The headers a sender adds to ``body`` signed at ``now`` (for senders and tests)."""
    stamp = str(int(now))
    digest = hmac_sha256_hex(secret, signed_message(stamp, body))
    return {TIMESTAMP_HEADER: stamp, SIGNATURE_HEADER: f"sha256={digest}"}


def verify(
    secret: str,
    timestamp: str | None,
    signature: str | None,
    body: bytes,
    now: float,
    tolerance: float = 300,
) -> None:
    """Raise 401 unless the call is signed with ``secret`` over ``timestamp.body`` and
    the timestamp is within ``tolerance`` seconds of ``now``."""
    stamp = (timestamp or "").strip()
    if not stamp:
        raise InboundRejected(
            401, f"missing {TIMESTAMP_HEADER} (the signature covers '<timestamp>.<body>')"
        )
    if not (stamp.isascii() and stamp.isdigit() and len(stamp) <= MAX_TIMESTAMP_DIGITS):
        raise InboundRejected(401, f"{TIMESTAMP_HEADER} is not a Unix time in seconds")
    if abs(now - int(stamp)) > tolerance:
        raise InboundRejected(
            401, f"{TIMESTAMP_HEADER} is more than {tolerance:g}s from now (replay or clock skew)"
        )
    check_signature(signature, "sha256=", secret, signed_message(stamp, body))


def parse(name: str, source: Source, body: bytes, owners: ChannelOwners | None = None) -> Parsed:
    """The webhook_received for a verified call, if ``source`` may address its
    conversation (whose owner ``owners`` says, for a channel's conversation)."""
    call = validate(WebhookCall, json_object(body))
    if call.tenant is not None:
        tenant = call.tenant
    elif len(source.tenants) == 1:
        tenant = source.tenants[0]
    else:
        raise InboundRejected(
            400, f"webhook source {name!r} serves several tenants: name one in 'tenant'"
        )
    check_addressable(name, tenant, call.conversation_id, source.tenants, source.prefixes, owners)
    data = {
        "source": name,
        "event_name": call.event,
        "payload_json": body.decode("utf-8"),
        "external_id": call.id,
    }
    event_id = stable_event_id("webhook", name, call.id)
    return Parsed(
        (Inbound("webhook_received", call.conversation_id, tenant, data, "webhook", event_id),)
    )
