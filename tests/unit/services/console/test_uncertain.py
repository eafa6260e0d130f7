"""Uncertain tool calls in the console's view: listed from an ``unknown`` tool_result with
the arguments of its tool_called, closed by a decision, whatever the order of arrival."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta

from pipeline.services.console.uncertain import RECENT_CALLS
from pipeline.services.console.view import WITH_AGENT, ConsoleView
from tests.unit.services.console.view_events import (
    ARGUMENTS,
    T0,
    called,
    decided,
    result,
    view_of,
)


def at(seconds: int) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_an_unknown_result_is_listed_with_its_calls_arguments_in_any_order() -> None:
    for order in itertools.permutations([called(1), result(2)]):
        view = view_of(list(order))
        (listed,) = view.uncertain_calls()
        assert (listed.call_id, listed.conversation_id, listed.tenant) == ("call-1", "c1", "t1")
        assert (listed.tool, listed.arguments_json) == ("refund", ARGUMENTS)
        assert listed.error.startswith("outcome unknown:")
        assert (listed.called_at, listed.reported_at) == (at(1), at(2))
        assert view.uncertain_call("call-1") is listed
        assert view.conversations["c1"].uncertain.listed() == [listed]
        # The conversation stays with the agent: it answered the model's "outcome unknown".
        assert view.conversations["c1"].state == WITH_AGENT


def test_a_decision_closes_the_call_whatever_came_first_and_for_good() -> None:
    story = [called(1), result(2), decided(3)]
    for order in itertools.permutations(story):
        view = view_of(list(order))
        assert view.uncertain_calls() == [], [e.type for e in order]
        assert view.uncertain_call("call-1") is None
    # Read again (the reader starts over, a second decision), it stays closed.
    view = view_of([*story, result(2), decided(4, outcome="failed"), result(5)])
    assert view.uncertain_calls() == []


def test_only_unknown_results_are_listed_the_longest_waiting_first() -> None:
    view = view_of(
        [
            result(1, "ok", "call-ok"),
            result(2, "error", "call-error"),
            result(3, "timeout", "call-late"),
            result(5, call_id="call-b", conversation="c2"),
            result(4, call_id="call-a", conversation="c1"),
        ]
    )
    assert [u.call_id for u in view.uncertain_calls()] == ["call-a", "call-b"]
    (alone,) = view.conversations["c2"].uncertain.listed()
    assert alone.arguments_json is None and alone.called_at is None


def test_a_conversation_keeps_the_arguments_of_its_recent_calls_only() -> None:
    view = ConsoleView(max_conversations=10, max_messages=10)
    view.apply_all(called(i, f"call-{i}") for i in range(RECENT_CALLS + 1))
    view.apply_all([result(100, call_id="call-0"), result(101, call_id=f"call-{RECENT_CALLS}")])
    by_id = {u.call_id: u for u in view.uncertain_calls()}
    assert by_id["call-0"].arguments_json is None, "the oldest call's arguments were dropped"
    assert by_id[f"call-{RECENT_CALLS}"].arguments_json == ARGUMENTS
    assert len(view.conversations["c1"].uncertain.recent) == RECENT_CALLS - 1
