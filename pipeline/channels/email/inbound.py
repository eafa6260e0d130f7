"""Inbound email: a normalised JSON message from a mail relay, threaded by Message-ID.

The relay (an inbound-parse webhook, or a small MTA script) posts ``from``, ``to``,
``subject``, ``text``, ``message_id`` and, on replies, ``in_reply_to`` and
``references``, authenticated by its bearer token.

Threading: the thread root is the first of ``references`` (RFC 5322 lists the thread
from its root), else ``in_reply_to``, else the message's own ``message_id``. The
conversation is ``email:`` + a short hash of the root, so the original and every reply
that carries In-Reply-To or References land in one conversation. The answer's address
keeps the root as ``thread_id`` and the attributes carry ``subject``, ``message_id`` and
``references`` (this thread's ids, then this message's), so delivery can set
In-Reply-To and References and mail clients thread the answer too.
"""

from __future__ import annotations

import hashlib
from email.utils import parseaddr
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from pipeline.channels.inbound import (
    Inbound,
    InboundRejected,
    Parsed,
    json_object,
    stable_event_id,
    validate,
)

MessageId = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=998)]


class EmailMessage(BaseModel):
    """An email as the relay normalised it."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    from_: str = Field(alias="from", min_length=3, description="Sender, 'Name <a@b>' or 'a@b'.")
    to: str | list[str] = Field(description="Recipient address(es).")
    subject: str = Field("", description="Subject line.")
    text: str = Field(description="Plain-text body.")
    message_id: MessageId = Field(description="Message-ID header, e.g. <abc@example.com>.")
    in_reply_to: MessageId | None = Field(None, description="In-Reply-To header.")
    references: list[str] = Field(
        default_factory=list, description="Message-IDs of the References header, root first."
    )


def normalise_id(raw: str) -> str:
    """``<id>``: one Message-ID with its angle brackets, whatever the relay sent."""
    return "<" + raw.strip().strip("<>").strip() + ">"


def thread_root(message_id: str, in_reply_to: str | None, references: list[str]) -> str:
    """The first message of the thread this one belongs to."""
    if references:
        return references[0]
    return in_reply_to or message_id


def conversation_id(root: str) -> str:
    return "email:" + hashlib.sha256(root.encode()).hexdigest()[:20]


def parse(body: bytes, tenant: str) -> Parsed:
    """The message_received for an authenticated relayed email."""
    message = validate(EmailMessage, json_object(body))
    name, address = parseaddr(message.from_)
    if "@" not in address:
        raise InboundRejected(400, f"'from' has no email address: {message.from_!r}")
    message_id = normalise_id(message.message_id)
    in_reply_to = normalise_id(message.in_reply_to) if message.in_reply_to else None
    in_reply_to = None if in_reply_to == "<>" else in_reply_to
    # A relay may pass References as one header string; split every item on whitespace.
    references = [normalise_id(i) for item in message.references for i in item.split()]
    references = [r for r in references if r != "<>"]
    if message_id == "<>":
        raise InboundRejected(400, "message_id is empty")
    root = thread_root(message_id, in_reply_to, references)
    attributes = {
        "subject": message.subject,
        "message_id": message_id,
        "references": " ".join([*references, message_id]),
        "to": message.to if isinstance(message.to, str) else ", ".join(message.to),
    }
    if in_reply_to:
        attributes["in_reply_to"] = in_reply_to
    data: dict[str, Any] = {
        "channel": "email",
        "sender_id": address,
        "sender_name": name or None,
        "text": message.text,
        "reply_to": {"channel": "email", "address": address, "thread_id": root},
        "external_id": message_id,
        "attachments": [],
        "attributes": attributes,
    }
    event_id = stable_event_id("email", tenant, message_id)
    return Parsed(
        (Inbound("message_received", conversation_id(root), tenant, data, "email", event_id),)
    )
