"""WhatsApp Cloud API, inbound: the verification handshake and signed notifications.

- GET handshake: ``hub.mode=subscribe`` with the configured ``hub.verify_token`` is
  answered with ``hub.challenge``; anything else is refused (403).
- POST: ``X-Hub-Signature-256`` must be ``sha256=`` + hex HMAC-SHA256 of the raw body
  with the app secret. One notification can carry several messages
  (``entry[].changes[].value.messages[]``): each becomes one message_received.
- Text, button and interactive (button or list reply) messages carry text; other kinds
  (media, location, reactions) are ignored and listed in the answer.
- ``statuses[]`` (sent, delivered, read, failed for the messages we sent) are accepted
  and produce nothing: a delivery_status names the response_ready it reports on, and
  the gateway keeps no map from WhatsApp message ids back to responses.

Conversations: one per business number and user, ``whatsapp:<phone_number_id>:<from>``.
The event id derives from the message id (``wamid``), so a redelivery is recognised.
Tenant: the one configured for the business number, see
:class:`~pipeline.channels.tenancy.ChannelOwners`.
"""

from __future__ import annotations

import hmac
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from pipeline.channels.inbound import (
    Inbound,
    Parsed,
    check_signature,
    json_object,
    stable_event_id,
    validate,
)
from pipeline.channels.tenancy import ChannelOwners
from pipeline.errors import InboundRejected


class _Loose(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)


class WhatsAppMessage(_Loose):
    id: str = Field(min_length=1, description="Message id (wamid).")
    from_: str = Field(alias="from", min_length=1, description="Sender's WhatsApp id.")
    type: str = Field(min_length=1)
    timestamp: str | None = None
    text: dict[str, Any] | None = None
    button: dict[str, Any] | None = None
    interactive: dict[str, Any] | None = None


class WhatsAppContact(_Loose):
    wa_id: str | None = None
    profile: dict[str, Any] | None = None


class WhatsAppMetadata(_Loose):
    phone_number_id: str = Field(min_length=1)
    display_phone_number: str | None = None


class WhatsAppValue(_Loose):
    metadata: WhatsAppMetadata | None = None
    contacts: list[WhatsAppContact] = Field(default_factory=list)
    messages: list[WhatsAppMessage] = Field(default_factory=list)
    statuses: list[dict[str, Any]] = Field(default_factory=list)


class WhatsAppChange(_Loose):
    field: str | None = None
    value: WhatsAppValue


class WhatsAppEntry(_Loose):
    id: str | None = None
    changes: list[WhatsAppChange] = Field(default_factory=list)


class WhatsAppNotification(_Loose):
    """A webhook notification of the WhatsApp Cloud API."""

    object: str = Field(description="whatsapp_business_account")
    entry: list[WhatsAppEntry] = Field(min_length=1)


def handshake(mode: str | None, token: str | None, challenge: str | None, expected: str) -> str:
    """The challenge to echo when the handshake is genuine, else 403."""
    if mode != "subscribe":
        raise InboundRejected(403, "hub.mode must be 'subscribe'")
    if token is None or not hmac.compare_digest(token.encode(), expected.encode()):
        raise InboundRejected(403, "hub.verify_token does not match")
    if not challenge:
        raise InboundRejected(400, "hub.challenge is missing")
    return challenge


def verify(secret: str, signature: str | None, body: bytes) -> None:
    """Raise 401 unless ``X-Hub-Signature-256`` signs ``body`` with the app secret."""
    check_signature(signature, "sha256=", secret, body)


def parse(body: bytes, tenant: str | ChannelOwners) -> Parsed:
    """The message_received events of a verified notification, in payload order;
    ``tenant`` is the tenant of every number, or the owners that say whose each one is."""
    notification = validate(WhatsAppNotification, json_object(body))
    events: list[Inbound] = []
    ignored: list[str] = []
    for entry in notification.entry:
        for change in entry.changes:
            value = change.value
            if value.statuses:
                ignored.append(f"{len(value.statuses)} status update(s)")
            if not value.messages:
                continue
            if value.metadata is None:
                raise InboundRejected(400, "messages without metadata.phone_number_id")
            names = {
                c.wa_id: str((c.profile or {}).get("name"))
                for c in value.contacts
                if c.wa_id and (c.profile or {}).get("name")
            }
            number = value.metadata.phone_number_id
            owner = tenant if isinstance(tenant, str) else tenant.whatsapp(number)
            for message in value.messages:
                text = _text(message)
                if text is None:
                    ignored.append(f"message {message.id} of type {message.type!r}")
                    continue
                events.append(_message(message, text, number, names, owner))
    return Parsed(tuple(events), tuple(ignored))


def _text(message: WhatsAppMessage) -> str | None:
    """The text a user sent, or None for kinds that carry none."""
    if message.type == "text" and message.text is not None:
        return str(message.text.get("body", ""))
    if message.type == "button" and message.button is not None:
        return str(message.button.get("text", ""))
    if message.type == "interactive" and message.interactive is not None:
        for kind in ("button_reply", "list_reply"):
            reply = message.interactive.get(kind)
            if isinstance(reply, dict):
                return str(reply.get("title", ""))
    return None


def _message(
    message: WhatsAppMessage,
    text: str,
    phone_number_id: str,
    names: dict[str, str],
    tenant: str,
) -> Inbound:
    sender = message.from_
    attributes = {"phone_number_id": phone_number_id, "type": message.type}
    if message.timestamp:
        attributes["timestamp"] = message.timestamp
    data: dict[str, Any] = {
        "channel": "whatsapp",
        "sender_id": sender,
        "sender_name": names.get(sender),
        "text": text,
        "reply_to": {"channel": "whatsapp", "address": sender, "thread_id": None},
        "external_id": message.id,
        "attachments": [],
        "attributes": attributes,
    }
    return Inbound(
        "message_received",
        f"whatsapp:{phone_number_id}:{sender}",
        tenant,
        data,
        "whatsapp",
        stable_event_id("whatsapp", message.id),
    )
