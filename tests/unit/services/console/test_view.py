"""The console's view: conversation states folded from events, whatever their order."""

from __future__ import annotations

import itertools
import json
from datetime import timedelta

from pipeline.events.model import Event
from pipeline.services.console.view import (
    WAITING_FOR_APPROVAL,
    WAITING_FOR_PERSON,
    WITH_AGENT,
    WITH_PERSON,
    ConsoleView,
)
from tests.unit.services.console.view_events import T0, event, handled, view_of


def received(seconds: int, text: str = "hi", conversation: str = "c1") -> Event:
    return event("message_received", seconds, conversation, channel="web", sender_id="u", text=text)


def approval(seconds: int, approval_id: str = "a1") -> Event:
    return event(
        "approval_requested",
        seconds,
        approval_id=approval_id,
        call_id="k",
        tool="calculator",
        arguments_json="{}",
        reason="",
        expires_at=T0 + timedelta(hours=1),
    )


def test_the_states_of_a_handoff_in_any_order_of_arrival() -> None:
    wrote = event("operator_message", 2, operator_id="ada", text="Hello")
    released = event("handoff_released", 4, operator_id="ada", note=None)
    story = [  # each step: what the console reads of it (the agent's outcome included)
        [received(0)],
        [event("handoff_requested", 1, requested_by="user", reason="asked", operator_id=None)],
        [wrote, handled(3, wrote)],
        [released, handled(5, released)],
    ]
    expected = [WITH_AGENT, WAITING_FOR_PERSON, WITH_PERSON, WITH_AGENT]
    for n in range(1, len(story) + 1):
        for order in itertools.permutations([e for step in story[:n] for e in step]):
            (conversation,) = view_of(list(order)).conversations.values()
            assert conversation.state == expected[n - 1], [e.type for e in order]


def test_an_operator_writing_first_takes_the_conversation() -> None:
    wrote = event("operator_message", 1, operator_id="bob", text="Hi")
    took = event(  # what the agent emits when an operator writes first
        "handoff_requested",
        2,
        cause=wrote,
        requested_by="operator",
        reason="operator bob took the conversation",
        operator_id="bob",
    )
    view = view_of([received(0), wrote, took, handled(2, wrote)])
    conversation = view.conversations["c1"]
    assert (conversation.state, conversation.operator) == (WITH_PERSON, "bob")
    assert [line.role for line in conversation.lines] == ["user", "operator"]


def test_approvals_pend_until_decided_or_expired_and_a_handoff_closes_them() -> None:
    decided = event("approval_decided", 2, approval_id="a1", decision="denied", operator_id="x")
    for order in ([approval(1), decided], [decided, approval(1)]):
        assert view_of(order).conversations["c1"].state == WITH_AGENT
    assert view_of([approval(1)]).conversations["c1"].state == WAITING_FOR_APPROVAL
    expired = event(
        "timer_fired",
        3,
        timer_id="t",
        purpose="approval_expiry",
        payload_json=json.dumps({"approval_id": "a1"}),
    )
    assert view_of([approval(1), expired]).pending_approvals() == []
    handed = event("handoff_requested", 2, requested_by="model", reason="r", operator_id=None)
    assert view_of([approval(1), handed]).pending_approvals() == []


def test_newest_activity_first_filtered_and_bounded() -> None:
    view = ConsoleView(max_conversations=3, max_messages=2)
    view.apply_all(received(i, f"m{i}", f"c{i}") for i in range(5))
    assert [c.conversation_id for c in view.listed()] == ["c4", "c3", "c2"]
    view.apply_all([received(9, "a", "c3"), received(10, "b", "c3"), received(11, "c", "c3")])
    assert view.listed()[0].conversation_id == "c3"
    assert [line.text for line in view.conversations["c3"].lines] == ["b", "c"]
    assert view.listed(channel="slack") == [] and len(view.listed(tenant="t1")) == 3
    assert [c.conversation_id for c in view.listed(state=WITH_AGENT)] == ["c3", "c4", "c2"]


def test_an_operator_reply_on_its_way_out_is_listed_once() -> None:
    wrote = event("operator_message", 1, operator_id="ada", text="On it")
    out = event(
        "response_ready",
        1,
        cause=wrote,
        text="On it",
        reply_to={"channel": "web", "address": "x", "thread_id": None},
    )
    took = handled(2, wrote)
    for order in ([wrote, out, took], [out, took, wrote], [wrote, wrote, took, out]):
        lines = view_of(order).conversations["c1"].lines
        assert [(line.role, line.text) for line in lines] == [("operator", "On it")]


def test_an_agent_answer_names_the_agent_version_that_wrote_it() -> None:
    question = received(0)
    view = view_of(
        [
            question,
            event("response_ready", 1, cause=question, text="Hello!", agent_version="2.1"),
            event("response_ready", 2, cause=question, text="Again"),
        ]
    )
    lines = view.conversations["c1"].lines
    assert [(line.role, line.who) for line in lines] == [
        ("user", "u"),
        ("agent", "agent@2.1"),
        ("agent", "agent"),
    ]
