"""Uncertain sends: an attempt recorded without an answer, resolved per channel."""

from __future__ import annotations

import pytest

from pipeline.channels.outbound import Outcome, PermanentFailure, Retryable, Sent
from pipeline.config.sections import DeliverySettings
from pipeline.errors import RejectEvent
from pipeline.events.model import Event
from pipeline.services.delivery.sent_store import SentEntry
from pipeline.services.delivery.uncertain import (
    Found,
    Resend,
    Unconfirmed,
    guarantee_of,
    resolve,
)
from tests.unit.services.delivery.delivery_support import (
    Script,
    answers,
    context,
    delivery,
    recorder,
    response,
    restored,
    statuses,
)


class Looking(Script):
    """A sender that can look up what it sent (like Slack's metadata lookup)."""

    def __init__(self, found: Sent | Retryable | PermanentFailure | None, *outcomes: Outcome):
        super().__init__(*outcomes)
        self.found = found
        self.lookups: list[int] = []

    async def find_sent(
        self, response: Event, since_ms: int
    ) -> Sent | Retryable | PermanentFailure | None:
        self.lookups.append(since_ms)
        return self.found


def attempted(event: Event, attempt: int = 1, at_ms: int = 1_700_000_000_000) -> SentEntry:
    return SentEntry(str(event.id), attempt, None, at_ms, "attempted")


# --------------------------------------------------------------------------- resolve


async def test_a_lookup_that_finds_it_means_sent_and_one_that_does_not_means_send() -> None:
    event = response("slack")
    found = await resolve(Looking(Sent("1.2", 200)), event, 1, 5, "at_most_once")
    assert found == Found(Sent("1.2", 200))
    missing = await resolve(Looking(None), event, 1, 5, "at_most_once")
    assert isinstance(missing, Resend)


async def test_a_failed_lookup_is_retried_or_fails_with_what_it_could_not_tell() -> None:
    event = response("slack")
    later = await resolve(
        Looking(Retryable("slack: ratelimited", 200, 3.0)), event, 2, 5, "at_least_once"
    )
    assert later == Retryable(
        "could not check whether attempt 2 arrived: slack: ratelimited", 200, 3.0
    )
    never = await resolve(
        Looking(PermanentFailure("slack: missing_scope", 200)), event, 2, 5, "at_least_once"
    )
    assert isinstance(never, PermanentFailure) and "missing_scope" in never.error


async def test_without_a_lookup_the_channel_guarantee_decides() -> None:
    event = response("whatsapp")
    assert isinstance(await resolve(Script(), event, 1, 5, "at_least_once"), Resend)
    unconfirmed = await resolve(Script(), event, 3, 5, "at_most_once")
    assert isinstance(unconfirmed, Unconfirmed)
    assert "attempt 3" in unconfirmed.reason
    assert "delivery.whatsapp_guarantee is at_most_once" in unconfirmed.reason


def test_guarantees_come_from_the_settings_and_web_always_sends_again() -> None:
    section = DeliverySettings(whatsapp_guarantee="at_most_once")
    assert guarantee_of(section, "whatsapp") == "at_most_once"
    assert guarantee_of(section, "email") == "at_least_once"
    assert guarantee_of(DeliverySettings(email_guarantee="at_most_once"), "email") == (
        "at_most_once"
    )
    assert guarantee_of(section, "web") == "at_least_once"


# --------------------------------------------------------------------------- the handler


async def test_web_sends_an_uncertain_response_again_with_the_same_key() -> None:
    sender = Script(Sent("m-2", 200))
    d = delivery({"web": sender})
    event = response()
    restored(d, attempted(event, attempt=1))
    ctx = context(event)
    await d.on_response_ready(event, ctx)
    [again] = sender.sent
    assert again.id == event.id  # the Idempotency-Key is the response id
    [status] = statuses(ctx)
    assert (status["state"], status["attempt"]) == ("sent", 2)


async def test_a_response_found_by_the_lookup_is_reported_sent_and_not_sent_again() -> None:
    sender = Looking(Sent("1700000000.000100", 200), Sent("never"))
    d = delivery({"slack": sender})
    event = response("slack")
    restored(d, attempted(event, attempt=1, at_ms=1_700_000_000_000))
    ctx = context(event)
    await d.on_response_ready(event, ctx)
    assert sender.sent == []
    assert sender.lookups == [1_700_000_000_000]
    [status] = statuses(ctx)
    assert (status["state"], status["attempt"], status["provider_message_id"]) == (
        "sent",
        1,
        "1700000000.000100",
    )
    stored = d.store.get(2, "conv-1", str(event.id))
    assert stored is not None and stored.state == "sent"


async def test_a_response_the_lookup_does_not_find_is_sent() -> None:
    sender = Looking(None, Sent("1.3"))
    d = delivery({"slack": sender})
    event = response("slack")
    restored(d, attempted(event))
    ctx = context(event)
    await d.on_response_ready(event, ctx)
    assert len(sender.sent) == 1 and len(sender.lookups) == 1
    assert [s["state"] for s in statuses(ctx)] == ["sent"]


async def test_a_failing_lookup_is_retried_and_never_sends_blind() -> None:
    sender = Looking(Retryable("slack: ratelimited", 200), Sent("never"))
    d = delivery({"slack": sender}, max_attempts=3)
    event = response("slack")
    restored(d, attempted(event))
    with pytest.raises(RejectEvent, match="could not check whether attempt 1 arrived"):
        await d.on_response_ready(event, context(event))
    assert sender.sent == []
    assert len(sender.lookups) == 2  # attempts 2 and 3
    stored = d.store.get(2, "conv-1", str(event.id))
    assert stored is not None and stored.uncertain, "still uncertain, for a redrive"


async def test_at_most_once_reports_unconfirmed_once_and_again_when_handled_again() -> None:
    sender = Script(Sent("never"))
    d = delivery({"whatsapp": sender}, whatsapp_guarantee="at_most_once")
    event = response("whatsapp")
    restored(d, attempted(event, attempt=2))
    first = context(event)
    await d.on_response_ready(event, first)
    again = context(event)
    await d.on_response_ready(event, again)
    assert sender.sent == []
    for ctx in (first, again):
        [status] = statuses(ctx)
        assert (status["state"], status["attempt"]) == ("unconfirmed", 2)
        assert "at_most_once" in status["error"]
    assert [s for s, _ in recorder(d).states()] == ["unconfirmed"]


async def test_a_send_without_an_answer_is_uncertain_at_once() -> None:
    timeout = Retryable("timeout: ReadTimeout", uncertain=True)
    at_most_once = Script(timeout, Sent("never"))
    d = delivery({"whatsapp": at_most_once}, whatsapp_guarantee="at_most_once")
    event = response("whatsapp")
    ctx = context(event)
    await d.on_response_ready(event, ctx)
    assert len(at_most_once.sent) == 1
    assert [s["state"] for s in statuses(ctx)] == ["unconfirmed"]

    looking = Looking(Sent("1.4"), timeout, Sent("never"))
    d = delivery({"slack": looking})
    event = response("slack")
    ctx = context(event)
    await d.on_response_ready(event, ctx)
    assert len(looking.sent) == 1 and len(looking.lookups) == 1
    assert [(s["state"], s["attempt"]) for s in statuses(ctx)] == [("sent", 1)]


async def test_a_refused_attempt_is_recorded_and_not_uncertain() -> None:
    sender = Script(Retryable("HTTP 503: busy", 503), Sent("m"))
    d = delivery({"whatsapp": sender}, whatsapp_guarantee="at_most_once")
    event = response("whatsapp")
    ctx = context(event)
    await d.on_response_ready(event, ctx)
    assert len(sender.sent) == 2
    assert recorder(d).states() == [
        ("attempted", 1),
        ("refused", 1),
        ("attempted", 2),
        ("sent", 2),
    ]
    assert answers(ctx) == []
