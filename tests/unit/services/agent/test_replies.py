"""The follow-up: scheduled after an answer once no turn is open, cancelled by a reply."""

from __future__ import annotations

from datetime import timedelta

from tests.unit.services.agent.handler_support import (
    ADDRESS,
    Harness,
    message,
    timer_fired,
    tool_result,
)


async def test_follow_up_is_scheduled_after_an_answer_and_cancelled_by_a_reply() -> None:
    agent = await Harness(follow_up_seconds=30).start()
    answer, scheduled = await agent.send(message("hello"))
    assert answer.type == "response_ready"
    assert scheduled.type == "timer_requested"
    assert scheduled["timer_id"] == "follow_up:c1"
    assert scheduled["action"] == "schedule"
    assert scheduled["purpose"] == "follow_up"
    due = scheduled["due_at"] - answer.metadata.occurred_at
    assert timedelta(seconds=29) < due <= timedelta(seconds=31)
    assert agent.state()["follow_up"]["timer_id"] == "follow_up:c1"

    cancel, _, rescheduled = await agent.send(message("thanks"))
    assert cancel.type == "timer_requested"
    assert (cancel["timer_id"], cancel["action"], cancel["due_at"]) == (
        "follow_up:c1",
        "cancel",
        None,
    )
    # The timer of the first answer fires late (cancel raced it): not wanted any more.
    assert await agent.send(timer_fired(scheduled)) == []
    (follow_up,) = await agent.send(timer_fired(rescheduled))
    assert follow_up["text"] == "Is there anything else I can help you with?"
    assert follow_up["proactive"] is True
    assert follow_up["reply_to"] == ADDRESS
    assert follow_up.metadata.correlation_id == rescheduled.metadata.correlation_id
    assert agent.state()["follow_up"] is None
    assert await agent.send(timer_fired(rescheduled)) == [], "sent once"


async def test_no_follow_up_while_a_turn_waits_for_tools() -> None:
    agent = await Harness(follow_up_seconds=5).start()
    (called,) = await agent.send(message("what is 2*3?"))
    answer, scheduled = await agent.send(tool_result(called, {"value": 6}))
    assert answer["text"] == "2*3 = 6"
    assert scheduled["action"] == "schedule"
