"""An uncertain send: an attempt went out and no answer was recorded.

Every attempt is recorded (and acknowledged by the broker) before it goes out, and its
answer as soon as it comes; an attempt found without an answer, after a restart or when
the request itself got none (a timeout, a lost connection), may or may not have reached
the channel. Each channel resolves that its own way:

- **web**: sent again, with the same ``Idempotency-Key``; the receiver drops the repeat.
- **a channel that can look** (:class:`~pipeline.channels.outbound.Lookup`; Slack: the
  response id in the message metadata, found in the conversation's recent messages): found
  means sent, not found means send; a lookup that fails is retried like a send.
- **the others** (WhatsApp, e-mail): their setting (``delivery.<channel>_guarantee``):
  ``at_least_once`` sends again (may arrive twice), ``at_most_once`` does not (may be
  missing, and its delivery_status says ``unconfirmed``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pipeline.channels.outbound import (
    ERROR_LIMIT,
    Lookup,
    PermanentFailure,
    Retryable,
    Sender,
    Sent,
    provider_id,
    sanitised,
)
from pipeline.config.sections import DeliverySettings
from pipeline.events.model import Event

Guarantee = Literal["at_least_once", "at_most_once"]
AT_LEAST_ONCE: Guarantee = "at_least_once"
AT_MOST_ONCE: Guarantee = "at_most_once"


@dataclass(frozen=True, slots=True)
class Resend:
    """Send it (again): not found, or the channel's repeats are acceptable."""

    reason: str


@dataclass(frozen=True, slots=True)
class Found:
    """The channel has it: report it sent, do not send."""

    outcome: Sent


@dataclass(frozen=True, slots=True)
class Unconfirmed:
    """At-most-once: not sent again; it may be missing."""

    reason: str


Resolution = Resend | Found | Unconfirmed | Retryable | PermanentFailure


def guarantee_of(section: DeliverySettings, channel: str) -> Guarantee:
    """How ``channel`` treats an uncertain send it cannot look up."""
    if channel == "whatsapp":
        return section.whatsapp_guarantee
    if channel == "email":
        return section.email_guarantee
    return AT_LEAST_ONCE


async def resolve(
    sender: Sender, response: Event, attempt: int, attempted_at_ms: int, guarantee: Guarantee
) -> Resolution:
    """What to do with ``response``, whose attempt ``attempt`` (made at
    ``attempted_at_ms``) may or may not have arrived."""
    channel = response["reply_to"]["channel"]
    if isinstance(sender, Lookup):
        found = await sender.find_sent(response, attempted_at_ms)
        if isinstance(found, Sent):
            return Found(Sent(provider_id(found.provider_message_id), found.http_status))
        if isinstance(found, Retryable | PermanentFailure):
            error = sanitised(
                f"could not check whether attempt {attempt} arrived: {found.error}", ERROR_LIMIT
            )
            if isinstance(found, Retryable):
                return Retryable(error, found.http_status, found.retry_after)
            return PermanentFailure(error, found.http_status)
        return Resend(f"attempt {attempt} is not in the {channel} conversation: sending it")
    if guarantee == AT_MOST_ONCE:
        return Unconfirmed(
            f"attempt {attempt} may or may not have reached {channel} (no answer was "
            f"recorded); not sent again: delivery.{channel}_guarantee is at_most_once"
        )
    return Resend(f"attempt {attempt} may or may not have reached {channel}: sending it again")
