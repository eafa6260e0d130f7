"""The sent store's records: each attempt acknowledged before its send, its answer after."""

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


async def test_the_attempt_is_acknowledged_before_the_send_the_answer_goes_with_the_status() -> (
    None
):
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
    assert recorder(d).states() == [("attempted", 1)]
    # Both go out with the outputs: the offset commits once both are acknowledged.
    assert [s["state"] for s in statuses(ctx)] == ["sent"]
    assert answers(ctx) == [("sent", 1)]


async def test_an_attempt_that_cannot_be_recorded_is_not_made() -> None:
    sender = Script(Sent())
    d = delivery({"web": sender})
    recorder(d).refuse = True
    event = response()
    with pytest.raises(BrokerUnavailableError):
        await d.on_response_ready(event, context(event))
    assert sender.sent == []
    assert d.store.get(2, "conv-1", str(event.id)) is None, "nothing remembered as attempted"
