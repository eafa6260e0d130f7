"""What changed in a conversation, counted: answers, tool calls paired by tool, handoffs
and approvals."""

from __future__ import annotations

import json
from typing import Any

from pipeline.evaluation.outcome import count
from pipeline.events.model import Event, Metadata
from pipeline.replay.diff import compare


def incoming(text: str) -> Event:
    metadata = Metadata.new("message_received", "c1", tenant_id="t", producer="gateway")
    return Event(metadata, {"text": text})


def out(cause: Event, index: int, event_type: str, **data: Any) -> Event:
    return Event(
        cause.metadata.caused_derived(event_type, f"agent/{index}", producer="agent"), data
    )


def call(cause: Event, index: int, tool: str, **arguments: Any) -> Event:
    return out(cause, index, "tool_called", tool=tool, arguments_json=json.dumps(arguments))


def test_tool_calls_are_paired_by_tool_equal_arguments_first() -> None:
    question = incoming("x")
    recorded = [
        call(question, 0, "calculator", expression="1+1"),
        call(question, 1, "calculator", expression="2+2"),
        call(question, 2, "lookup", query="a"),
    ]
    replayed = [
        call(question, 0, "calculator", expression="2+2"),
        call(question, 1, "calculator", expression="3+3"),
        call(question, 2, "weather", city="Paris"),
    ]
    counts = count(compare("c1", [question], recorded, replayed))
    assert (counts.recorded_tool_calls, counts.replayed_tool_calls) == (3, 3)
    assert (counts.added_tool_calls, counts.removed_tool_calls) == (1, 1)
    assert counts.changed_tool_arguments == 1
    assert (counts.answers, counts.changed_inputs) == (0, 1)


def test_answers_handoffs_and_approvals_are_counted_per_input() -> None:
    hello, refund = incoming("hello"), incoming("refund please")
    recorded = [
        out(hello, 0, "response_ready", text="Hi"),
        out(refund, 0, "approval_requested", tool="refund", arguments_json="{}"),
    ]
    replayed = [
        out(hello, 0, "response_ready", text="Hi"),
        out(refund, 0, "handoff_requested", requested_by="model", reason="r"),
        out(refund, 1, "response_ready", text="A person will help"),
    ]
    counts = count(compare("c1", [hello, refund], recorded, replayed))
    assert (counts.answers, counts.changed_answers) == (2, 1)
    assert (counts.new_handoffs, counts.lost_handoffs) == (1, 0)
    assert (counts.new_approvals, counts.lost_approvals) == (0, 1)
    assert (counts.inputs, counts.changed_inputs) == (2, 1)
