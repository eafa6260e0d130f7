"""Comparing replayed outputs with recorded ones: matching by cause, emission order,
rendering, labels and the unified diff."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from pipeline.events.model import Event, Metadata, utc_now
from pipeline.replay.diff import compare, emission_index, render, summarise

ADDRESS = {"channel": "web", "address": "http://127.0.0.1/cb", "thread_id": None}


def incoming(text: str) -> Event:
    metadata = Metadata.new("message_received", "c1", tenant_id="t1", producer="gateway")
    return Event(metadata, {"text": text, "reply_to": ADDRESS})


def emitted(cause: Event, index: int, event_type: str, data: Mapping[str, Any]) -> Event:
    """What a handler's ``index``-th emission in answer to ``cause`` looks like."""
    metadata = cause.metadata.caused_derived(event_type, f"agent/{index}", producer="agent")
    return Event(metadata, dict(data))


def reply(cause: Event, text: str, index: int = 0) -> Event:
    return emitted(cause, index, "response_ready", {"text": text, "reply_to": ADDRESS})


def test_equal_outputs_are_no_difference_whatever_their_times() -> None:
    question = incoming("hi")
    old = emitted(question, 0, "timer_requested", {"due_at": utc_now(), "timer_id": "f"})
    new = emitted(
        question, 0, "timer_requested", {"due_at": utc_now() + timedelta(1), "timer_id": "f"}
    )
    diff = compare("c1", [question], [old], [new])
    assert not diff.changed
    assert diff.report().endswith(
        "1 input(s) replayed, 1 output(s) recorded, 1 replayed: no difference"
    )


def test_another_agent_version_alone_is_no_difference() -> None:
    question = incoming("hi")
    old = emitted(question, 0, "response_ready", {"text": "Hello!", "agent_version": "1.0"})
    new = emitted(question, 0, "response_ready", {"text": "Hello!", "agent_version": "2.0"})
    assert not compare("c1", [question], [old], [new]).changed
    louder = emitted(question, 0, "response_ready", {"text": "HELLO!", "agent_version": "2.0"})
    [changed] = compare("c1", [question], [old], [louder]).changes()
    assert changed.kinds() == ["response_ready.text"]
    assert "agent_version" not in changed.unified()


def test_a_changed_text_is_a_labelled_unified_diff() -> None:
    question = incoming("hi")
    diff = compare("c1", [question], [reply(question, "Hello!")], [reply(question, "HELLO!")])
    assert diff.changed
    [changed] = diff.changes()
    assert changed.kinds() == ["response_ready.text"]
    text = changed.unified("shouting")
    assert '-  text: "Hello!"' in text
    assert '+  text: "HELLO!"' in text
    assert "--- recorded: outputs of message_received" in text
    assert "+++ shouting: outputs of the same input" in text
    assert '"hi"' in diff.report()


def test_outputs_are_matched_to_their_cause_and_put_in_emission_order() -> None:
    first, second = incoming("one"), incoming("two")
    called = emitted(first, 0, "tool_called", {"tool": "calculator"})
    answer = reply(first, "84", index=1)
    # Recorded in another order (topics interleave), with a repeat after a crash.
    recorded = [answer, reply(second, "two"), called, answer]
    replayed = [called, answer, reply(second, "TWO")]
    diff = compare("c1", [first, second], recorded, replayed)
    assert [d.changed for d in diff.inputs] == [False, True]
    assert [e.type for e in diff.inputs[0].recorded] == ["tool_called", "response_ready"]
    assert diff.inputs[1].kinds() == ["response_ready.text"]


def test_missing_added_and_retyped_outputs_are_labelled() -> None:
    question = incoming("what is 1+1")
    called = emitted(question, 0, "tool_called", {"tool": "calculator"})
    called_later = emitted(question, 1, "tool_called", {"tool": "calculator"})
    diff = compare("c1", [question], [called], [reply(question, "2"), called_later])
    assert diff.inputs[0].kinds() == ["-tool_called", "+response_ready", "+tool_called"]
    gone = compare("c1", [question], [called], [])
    assert gone.inputs[0].kinds() == ["-tool_called"]
    assert gone.report().count("\n-tool_called") == 1


def test_the_emission_index_comes_from_the_derived_id() -> None:
    question = incoming("hi")
    assert [emission_index(reply(question, "x", i)) for i in (0, 3, 17)] == [0, 3, 17]
    assert emission_index(question) == 256  # not emitted through a context


def test_render_sorts_fields_and_hides_times() -> None:
    event = emitted(
        incoming("hi"),
        0,
        "timer_requested",
        {"timer_id": "f", "due_at": utc_now(), "payload_json": None},
    )
    assert render(event) == [
        "timer_requested",
        "  due_at: <time>",
        "  payload_json: null",
        '  timer_id: "f"',
    ]


def test_a_replay_dead_letter_is_a_change() -> None:
    question = incoming("hi")
    diff = compare("c1", [question], [], [], ["message_received at offset 0: RejectEvent: no"])
    assert diff.changed
    assert diff.kinds() == {"dead_letter": 1}
    assert "the replay dead-lettered an input: message_received" in diff.report()


def test_a_sample_summary_counts_conversations_and_kinds() -> None:
    a, b, c = incoming("a"), incoming("b"), incoming("c")
    diffs = [
        compare("c1", [a], [reply(a, "a")], [reply(a, "A")]),
        compare("c2", [b], [reply(b, "b")], [reply(b, "B")]),
        compare("c3", [c], [reply(c, "c")], [reply(c, "c")]),
    ]
    assert summarise(diffs).splitlines() == [
        "3 conversation(s) replayed: 2 changed, 1 unchanged",
        "     2  response_ready.text",
    ]
