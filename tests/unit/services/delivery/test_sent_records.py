"""Delivery's journal records: each attempt acknowledged before its send, its answer after."""

from __future__ import annotations

from typing import Any

import pytest

from pipeline.channels.outbound import Outcome, Sent
from pipeline.errors import BrokerUnavailableError
from pipeline.events.model import Event
from tests.unit.services.delivery.delivery_support import (
    Script,
    answers,
    context,
    delivery,
    recorder,
    response,
    statuses,
)


async def test_the_attempt_is_acknowledged_before_the_send_and_the_answer_at_once() -> None:
    d: Any = None

    class Checking(Script):
        async def send(self, response: Event) -> Outcome:
            assert recorder(d).states() == [("attempted", 1)], "sent before it was recorded"
            return await super().send(response)

    sender = Checking(Sent("m-1", 200))
    d = delivery({"web": sender})
    event = response()
    ctx = context(event)
    await d.on_response_ready(event, ctx)
    # Both written at once, not with the outputs (in exactly-once mode: outside the
    # transaction, so an abort does not take them along); the status goes with the outputs.
    assert recorder(d).states() == [("attempted", 1), ("sent", 1)]
    assert [s["state"] for s in statuses(ctx)] == ["sent"]
    assert answers(ctx) == []


async def test_an_attempt_that_cannot_be_recorded_is_not_made() -> None:
    sender = Script(Sent())
    d = delivery({"web": sender})
    recorder(d).refuse = True
    event = response()
    with pytest.raises(BrokerUnavailableError):
        await d.on_response_ready(event, context(event))
    assert sender.sent == []
    assert d.store.get(2, "conv-1", str(event.id)) is None, "nothing remembered as attempted"
