"""Per-field limits on what a request turns into, checked before anything is produced.

The body limit (middleware) bounds a request as a whole; these bound its parts, the
same for every channel because they apply to the normalised events: how many messages
one request may carry, how long a message's text and its ids may be, how many
attachments it may have. A request over any limit is refused whole (413, with the
field and the limit in the reason) and produces nothing.
"""

from __future__ import annotations

from typing import Any

from pipeline.channels.inbound import Inbound, Parsed
from pipeline.config.sections import GatewaySettings
from pipeline.errors import InboundRejected

# Fields of an inbound event that are identifiers or addresses (bounded by max_id_chars).
_ID_FIELDS = ("sender_id", "external_id")


def check_limits(parsed: Parsed, limits: GatewaySettings) -> None:
    """Raise 413 naming the first field of ``parsed`` over its limit."""
    count = len(parsed.events)
    if count > limits.max_messages_per_request:
        raise _over(f"{count} messages in one request", limits.max_messages_per_request)
    for inbound in parsed.events:
        _check_event(inbound, limits)


def _check_event(inbound: Inbound, limits: GatewaySettings) -> None:
    data = inbound.data
    _check_chars("conversation_id", inbound.conversation_id, limits.max_id_chars)
    for name in _ID_FIELDS:
        _check_chars(name, data.get(name), limits.max_id_chars)
    reply_to: Any = data.get("reply_to")
    if isinstance(reply_to, dict):
        _check_chars("reply_to.address", reply_to.get("address"), limits.max_id_chars)
        _check_chars("reply_to.thread_id", reply_to.get("thread_id"), limits.max_id_chars)
    _check_chars("text", data.get("text"), limits.max_text_chars)
    attachments = data.get("attachments") or ()
    if len(attachments) > limits.max_attachments:
        raise _over(f"{len(attachments)} attachments on one message", limits.max_attachments)


def _check_chars(field: str, value: Any, limit: int) -> None:
    if isinstance(value, str) and len(value) > limit:
        raise InboundRejected(
            413, f"{field} is {len(value)} characters long, over the limit of {limit}"
        )


def _over(what: str, limit: int) -> InboundRejected:
    return InboundRejected(413, f"{what}, over the limit of {limit}")
