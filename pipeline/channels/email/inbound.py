"""Inbound email: a normalised JSON message from a mail relay, threaded by Message-ID.

The relay (an inbound-parse webhook, or a small MTA script) posts ``from``, ``to``,
``subject``, ``text``, ``message_id`` and, on replies, ``in_reply_to`` and
``references``, authenticated by its own bearer token (each relay has one, and a
tenant). Unless the relay is configured to vouch for senders itself, it also passes
the receiving server's verdicts, ``authentication_results`` (the Authentication-Results
header values) or ``verdicts`` (``{"dmarc": "pass"}``), and mail that does not
authenticate its From domain is refused with 403 (see
:mod:`pipeline.channels.email.authentication`): ``From`` is not trusted on its own.

Threading: the thread root is the first of ``references`` (RFC 5322 lists the thread
from its root), else ``in_reply_to``, else the message's own ``message_id``. The
conversation is ``email:<tenant>:`` (the relay's tenant, so the id says whose it is:
see :mod:`pipeline.channels.tenancy`) + a short hash of the tenant, the sender's address
and the root, so the original and every reply of the same sender that carries
In-Reply-To or References land in one conversation, while a stranger quoting someone
else's Message-ID starts a conversation of their own. The answer's address keeps the
root as ``thread_id`` and the attributes carry ``subject``, ``message_id`` and
``references`` (this thread's ids, then this message's), so delivery can set
In-Reply-To and References and mail clients thread the answer too.
"""

from __future__ import annotations

import hashlib
from email.utils import parseaddr
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from pipeline.channels.email.authentication import judge
from pipeline.channels.inbound import Inbound, Parsed, json_object, stable_event_id, validate
from pipeline.errors import InboundRejected

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
    authentication_results: str | list[str] = Field(
        default_factory=list,
        description="Authentication-Results header value(s) of the receiving server "
        "(RFC 8601), e.g. 'mx.example.com; spf=pass smtp.mailfrom=a@b.org; dkim=pass "
        "header.d=b.org; dmarc=pass header.from=b.org'.",
    )
    verdicts: dict[str, str] = Field(
        default_factory=dict,
        description="Verdicts the relay reports without a header, e.g. {'dmarc': 'pass'}.",
    )


def normalise_id(raw: str) -> str:
    """``<id>``: one Message-ID with its angle brackets, whatever the relay sent."""
    return "<" + raw.strip().strip("<>").strip() + ">"


def thread_root(message_id: str, in_reply_to: str | None, references: list[str]) -> str:
    """The first message of the thread this one belongs to."""
    if references:
        return references[0]
    return in_reply_to or message_id


def conversation_id(tenant: str, sender: str, root: str) -> str:
    """One conversation per tenant, sender address and thread, in the tenant's namespace."""
    key = "\x1f".join((tenant, sender.lower(), root))
    return f"email:{tenant}:" + hashlib.sha256(key.encode()).hexdigest()[:20]


def check_sender(
    message: EmailMessage, address: str, *, required: bool, authserv_id: str | None
) -> None:
    """403 unless the relay's results authenticate the From domain (when ``required``)."""
    if not required:
        return
    headers = message.authentication_results
    headers = [headers] if isinstance(headers, str) else headers
    domain = address.rpartition("@")[2]
    verdict = judge(domain, headers, message.verdicts, authserv_id)
    if not verdict.accepted:
        raise InboundRejected(
            403,
            f"mail from {domain!r} is not authenticated: the relay reports {verdict.reported} "
            "(needs dmarc=pass, or dkim/spf=pass for that domain)",
        )


def parse(
    body: bytes, tenant: str, *, require_authentication: bool = True, authserv_id: str | None = None
) -> Parsed:
    """The message_received for a relayed email whose sender is authenticated."""
    message = validate(EmailMessage, json_object(body))
    name, address = parseaddr(message.from_)
    if "@" not in address:
        raise InboundRejected(400, f"'from' has no email address: {message.from_!r}")
    check_sender(message, address, required=require_authentication, authserv_id=authserv_id)
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
        (
            Inbound(
                "message_received",
                conversation_id(tenant, address, root),
                tenant,
                data,
                "email",
                event_id,
            ),
        )
    )
