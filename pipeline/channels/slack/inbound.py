"""Slack Events API, inbound: signature v0, url_verification, message events.

- Signature: ``X-Slack-Signature`` is ``v0=`` + hex HMAC-SHA256 of
  ``v0:{X-Slack-Request-Timestamp}:{raw body}`` with the signing secret; the timestamp
  must be within 5 minutes of now (replay protection).
- ``url_verification`` is answered with its challenge.
- ``event_callback`` with a ``message`` event becomes a message_received; bot messages
  (``bot_id``, subtype ``bot_message``) and edits, deletions, joins (any other subtype)
  are ignored, so the assistant never answers itself.
- The event id derives from Slack's ``event_id``, so a provider retry (same
  ``event_id``, header ``X-Slack-Retry-Num``) yields the same event id.

Conversations: a thread is one conversation, ``slack:<team>:<channel>:<thread_ts>``; a
top-level channel message starts a thread whose ``thread_ts`` is its ``ts``, so the
message and the replies in its thread share a conversation, and answers go into that
thread. A direct message (``channel_type`` ``im``) outside a thread belongs to one
conversation per DM channel, ``slack:<team>:<channel>``, answered without a thread.

Tenant: the one configured for the workspace (``team_id``), see
:class:`~pipeline.channels.tenancy.ChannelOwners`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from pipeline.channels.inbound import (
    Inbound,
    Parsed,
    check_signature,
    json_object,
    parse_timestamp,
    stable_event_id,
    validate,
)
from pipeline.channels.tenancy import ChannelOwners
from pipeline.errors import InboundRejected

TOLERANCE_SECONDS = 300
# Subtypes that are still a person writing; every other subtype is housekeeping.
USER_SUBTYPES = frozenset({None, "file_share", "thread_broadcast"})


class SlackEvent(BaseModel):
    """The inner ``event`` of an event_callback (only the fields the gateway reads)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    type: str = Field(min_length=1)
    subtype: str | None = None
    channel: str | None = None
    channel_type: str | None = None
    user: str | None = None
    bot_id: str | None = None
    text: str | None = None
    ts: str | None = None
    thread_ts: str | None = None
    client_msg_id: str | None = None


class SlackEnvelope(BaseModel):
    """A request of the Slack Events API (``url_verification`` or ``event_callback``)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    type: str = Field(min_length=1, description="url_verification or event_callback.")
    challenge: str | None = Field(None, description="Present on url_verification.")
    team_id: str | None = None
    event_id: str | None = None
    event_time: int | None = None
    event: SlackEvent | None = None


@dataclass(frozen=True, slots=True)
class Challenge:
    """Answer a url_verification with this value."""

    value: str


def verify(
    secret: str, timestamp: str | None, signature: str | None, body: bytes, now: float
) -> None:
    """Raise 401 unless the request is signed with ``secret`` and fresh."""
    sent_at = parse_timestamp(timestamp, "X-Slack-Request-Timestamp")
    if abs(now - sent_at) > TOLERANCE_SECONDS:
        raise InboundRejected(
            401, f"request timestamp is more than {TOLERANCE_SECONDS}s from now (replay?)"
        )
    signed = f"v0:{(timestamp or '').strip()}:".encode() + body
    check_signature(signature, "v0=", secret, signed)


def parse(body: bytes, tenant: str | ChannelOwners) -> Challenge | Parsed:
    """A verified request as a challenge to answer, or the events it yields; ``tenant``
    is the tenant of every workspace, or the owners that say whose each one is."""
    envelope = validate(SlackEnvelope, json_object(body))
    if envelope.type == "url_verification":
        if not envelope.challenge:
            raise InboundRejected(400, "url_verification without a challenge")
        return Challenge(envelope.challenge)
    if envelope.type != "event_callback":
        return Parsed(ignored=(f"request type {envelope.type!r} is not handled",))
    if envelope.event is None or not envelope.event_id or not envelope.team_id:
        raise InboundRejected(400, "event_callback needs team_id, event_id and event")
    event = envelope.event
    if event.type != "message":
        return Parsed(ignored=(f"event type {event.type!r} is not handled",))
    if event.bot_id or event.subtype == "bot_message":
        return Parsed(ignored=("bot message",))
    if event.subtype not in USER_SUBTYPES:
        return Parsed(ignored=(f"message subtype {event.subtype!r} is not a user message",))
    if not event.channel or not event.ts or not event.user:
        raise InboundRejected(400, "message event needs channel, user and ts")
    where = (event.channel, event.user, event.ts)
    team = envelope.team_id
    owner = tenant if isinstance(tenant, str) else tenant.slack(team)
    return Parsed((_message(team, envelope.event_id, event, where, owner),))


def _message(
    team_id: str, event_id: str, event: SlackEvent, where: tuple[str, str, str], tenant: str
) -> Inbound:
    channel, user, ts = where
    if event.thread_ts is None and event.channel_type == "im":
        conversation_id = f"slack:{team_id}:{channel}"
        thread_id: str | None = None
    else:
        thread_id = event.thread_ts or ts
        conversation_id = f"slack:{team_id}:{channel}:{thread_id}"
    attributes = {"team_id": team_id, "ts": ts}
    if event.client_msg_id:
        attributes["client_msg_id"] = event.client_msg_id
    data: dict[str, Any] = {
        "channel": "slack",
        "sender_id": user,
        "sender_name": None,
        "text": event.text or "",
        "reply_to": {"channel": "slack", "address": channel, "thread_id": thread_id},
        "external_id": event_id,
        "attachments": [],
        "attributes": attributes,
    }
    return Inbound(
        "message_received",
        conversation_id,
        tenant,
        data,
        "slack",
        stable_event_id("slack", team_id, event_id),
    )
