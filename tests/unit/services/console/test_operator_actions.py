"""What became of operator actions in the console's view: an operator's request changes
nothing on its own; the agent's outcome (accepted, ignored) or a dead letter (refused)
settles it, in any order of arrival, and a refusal or an ignored action is announced to
the live streams of who sees the tenant."""

from __future__ import annotations

import itertools
from datetime import timedelta

from pipeline.deadletters import DeadLetterEntry
from pipeline.events.model import Event
from pipeline.services.console.access import Access
from pipeline.services.console.operator_actions import ACCEPTED, IGNORED, REFUSED, SENT
from pipeline.services.console.view import WAITING_FOR_PERSON, WITH_AGENT, WITH_PERSON
from tests.unit.services.console.view_events import T0, event, handled, view_of

ASKED = event("handoff_requested", 1, requested_by="user", reason="asked", operator_id=None)
T1_AGENT = Access("ada", "agent", frozenset({"t1"}))
T2_AGENT = Access("eve", "agent", frozenset({"t2"}))


def received(seconds: int) -> Event:
    return event("message_received", seconds, channel="web", sender_id="u", text="help")


def letter(request: Event, error: str, seconds: int = 9) -> DeadLetterEntry:
    """The agent's dead letter of ``request`` (what the console's reader hands the view)."""
    return DeadLetterEntry(
        letter_id=f"0:{seconds}",
        partition=0,
        offset=seconds,
        dead_letter_id=f"dl-{request.id}",
        dead_lettered_at=T0 + timedelta(seconds=seconds),
        source_topic="operator_message",
        source_partition=0,
        source_offset=3,
        source_timestamp=None,
        stage="handler",
        service="agent",
        handler="on_operator_message",
        error_type="RejectEvent",
        error=error,
        attempts=1,
        event_type=request.type,
        conversation_id=request.conversation_id,
        key=None,
        value=None,
        headers=(),
        tenant=request.metadata.tenant_id,
    )


def test_an_operators_request_alone_changes_nothing() -> None:
    wrote = event("operator_message", 2, operator_id="ada", text="Hello")
    released = event("handoff_released", 3, operator_id="ada", note="done")
    view = view_of([received(0), ASKED, wrote, released])
    conversation = view.conversations["c1"]
    assert conversation.state == WAITING_FOR_PERSON and conversation.operator is None
    assert [line.role for line in conversation.lines] == ["user"]
    assert [(a.kind, a.status) for a in conversation.actions.recent()] == [
        ("handoff_released", SENT),
        ("operator_message", SENT),
    ]


def test_an_ignored_release_changes_nothing_and_says_why() -> None:
    wrote = event("operator_message", 2, operator_id="ada", text="Hello")
    released = event("handoff_released", 4, operator_id="bob", note=None)
    ignored = handled(5, released, "ignored", "no person has this conversation")
    for order in itertools.permutations([wrote, handled(3, wrote), released, ignored]):
        view = view_of([received(0), ASKED, *order])
        conversation = view.conversations["c1"]
        assert (conversation.state, conversation.operator) == (WITH_PERSON, "ada")
        action = conversation.actions.get(str(released.id))
        assert action is not None
        assert (action.status, action.reason) == (IGNORED, "no person has this conversation")
        assert action.what == "release by bob"
        (notice,) = view.notices_for(T1_AGENT, 0)
        assert (notice.kind, notice.as_json()["reason"]) == ("ignored", action.reason)


def test_a_refused_message_is_shown_refused_and_the_state_stays() -> None:
    view = view_of([received(0), ASKED])
    wrote = event("operator_message", 2, operator_id="ada", text="Hello")
    reason = "operator_message names conversation 'c1', which the agent does not have"
    for first, second in ((wrote, "letter"), ("letter", wrote)):
        view = view_of([received(0), ASKED])
        seen_before = view.changes_seen_by(T1_AGENT)
        for step in (first, second):
            if step == "letter":
                view.dead_lettered(letter(wrote, reason), wrote)
            else:
                assert isinstance(step, Event)
                view.apply(step)
        conversation = view.conversations["c1"]
        assert conversation.state == WAITING_FOR_PERSON
        assert [line.role for line in conversation.lines] == ["user"], "not listed"
        action = conversation.actions.get(str(wrote.id))
        assert action is not None and action.status == REFUSED
        assert action.reason == f"agent: {reason}" and action.detail == "Hello"
        (notice,) = view.notices_for(T1_AGENT, 0)
        assert notice.as_json() == {
            "action_id": str(wrote.id),
            "action": "operator_message",
            "what": "reply by ada",
            "conversation_id": "c1",
            "status": REFUSED,
            "reason": f"agent: {reason}",
        }
        assert view.notices_for(T2_AGENT, 0) == [], "another tenant hears nothing"
        assert view.changes_seen_by(T1_AGENT) > seen_before
        assert view.letters_seen_by(T1_AGENT) == 1 and view.letters_seen_by(T2_AGENT) == 0


def test_a_refused_action_redriven_and_then_taken_is_taken() -> None:
    wrote = event("operator_message", 2, operator_id="ada", text="Hello")
    view = view_of([received(0), ASKED, wrote])
    view.dead_lettered(letter(wrote, "the agent was restoring", seconds=3), wrote)
    view.apply(handled(8, wrote))  # redriven, then taken
    conversation = view.conversations["c1"]
    assert conversation.actions.get(str(wrote.id)).status == ACCEPTED  # type: ignore[union-attr]
    assert conversation.state == WITH_PERSON
    assert [(line.role, line.text) for line in conversation.lines][-1] == ("operator", "Hello")


def test_a_dead_letter_of_another_event_or_conversation_refuses_nothing() -> None:
    view = view_of([received(0)])
    asked = received(1)
    view.dead_lettered(letter(asked, "the model was down"), asked)
    stranger = event("operator_message", 2, "c9", operator_id="x", text="hi")
    view.dead_lettered(letter(stranger, "no such conversation"), stranger)
    assert view.notices_for(Access("root", "admin", None), 0) == []
    assert view.conversations["c1"].state == WITH_AGENT and "c9" not in view.conversations
    assert view.letters_seen_by(T1_AGENT) == 2
    view.redriven(f"dl-{asked.id}")
    assert view.letters_seen_by(T1_AGENT) == 3 and view.letters_seen_by(T2_AGENT) == 0
