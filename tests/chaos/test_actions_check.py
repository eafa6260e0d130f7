"""The actions comparison finds each kind of failure it is meant to find (no broker needed)."""

from __future__ import annotations

from tests.chaos.actions_check import (
    AGENT,
    AT_MOST_ONCE,
    KEYED,
    SIGKILL,
    SIGTERM,
    TOOLS,
    ActionsComparison,
    Asked,
    Kill,
    Reply,
    ToolCalled,
    ToolResult,
    compare,
    is_outcome_unknown,
)
from tests.chaos.chaos_check import AT_LEAST_ONCE, EXACTLY_ONCE
from tests.chaos.model_stand_in import FINAL_STEP, TOOL_STEP, ModelRequest
from tests.chaos.side_effects import Execution

GUARANTEES = {"refund_keyed": KEYED, "refund_once": AT_MOST_ONCE}
ASKED = [Asked("c1", "refund_keyed", "o1"), Asked("c2", "refund_once", "o2")]
KILL_AT = 100.0


def run(key: str | None = None, call_id: str | None = None, **changes: object) -> Execution:
    """An execution of c1's keyed refund (``changes`` override any field)."""
    fields: dict[str, object] = {
        "tool": "refund_keyed",
        "conversation": "c1",
        "order_id": "o1",
        "call_id": call_id,
        "key": key,
        "attempt": None,
        "deduplicated": False,
        "pid": 1,
        "at": 50.0,
    }
    fields.update(changes)
    return Execution(**fields)  # type: ignore[arg-type]


ONCE_EACH = [run("k1", "a"), run("k2", "b", tool="refund_once", conversation="c2", order_id="o2")]


def model(conversation: str, step: str, start: float, end: float) -> ModelRequest:
    return ModelRequest(f"{conversation}/{step}", conversation, step, start, end, None, None, True)


CLEAN_MODEL = [
    model("c1", TOOL_STEP, 10, 10.2),
    model("c1", FINAL_STEP, 11, 11.2),
    model("c2", TOOL_STEP, 20, 20.2),
    model("c2", FINAL_STEP, 21, 21.2),
]
CLEAN_REPLIES = [Reply("c1", "Refund of o1 for c1: done.", "r1"), Reply("c2", "for c2: done", "r2")]


def check(
    executions: list[Execution] | None = None,
    requests: list[ModelRequest] | None = None,
    replies: list[Reply] | None = None,
    *,
    called: list[ToolCalled] | None = None,
    results: list[ToolResult] | None = None,
    kills: list[Kill] | None = None,
) -> ActionsComparison:
    return compare(
        ASKED,
        CLEAN_MODEL if requests is None else requests,
        ONCE_EACH if executions is None else executions,
        called or [],
        results or [],
        CLEAN_REPLIES if replies is None else replies,
        kills or [],
        GUARANTEES,
    )


def test_a_clean_run_has_no_problem_in_any_mode_or_signal() -> None:
    result = check()
    assert result.executions_beyond_one == result.model.repeats == 0
    assert (result.replies.replies, result.replies.missing) == (2, 0)
    for guarantee in (AT_LEAST_ONCE, EXACTLY_ONCE):
        for signal in (SIGKILL, SIGTERM):
            assert result.problems(guarantee, signal) == []


def test_a_keyed_tool_run_again_with_its_key_deduplicated_is_no_repeated_effect() -> None:
    again = run("k1", "a", deduplicated=True, at=60.0)
    result = check([*ONCE_EACH, again])
    keyed = result.tools["refund_keyed"]
    assert (keyed.executions_beyond_one, keyed.effects_beyond_one, keyed.deduplicated) == (1, 0, 1)
    assert result.problems(AT_LEAST_ONCE) == []
    # Under SIGTERM nothing may run twice at all.
    assert result.problems(AT_LEAST_ONCE, SIGTERM) == [
        "refund_keyed: executions beyond one under SIGTERM=1"
    ]


def test_a_keyed_tool_that_took_effect_twice_is_found() -> None:
    result = check([*ONCE_EACH, run("k-new", "a2")])
    keyed = result.tools["refund_keyed"]
    assert (keyed.effects_beyond_one, keyed.beyond_one_under_new_call_id) == (1, 1)
    assert result.problems(EXACTLY_ONCE) == ["refund_keyed: effects beyond one=1"]


def test_an_at_most_once_tool_run_twice_is_found_and_reported_uncertainty_is_not() -> None:
    twice = run(tool="refund_once", conversation="c2", order_id="o2", at=70.0)
    result = check([*ONCE_EACH, twice])
    assert result.tools["refund_once"].executions_beyond_one == 1
    assert result.problems(AT_LEAST_ONCE) == ["refund_once: executions beyond one=1"]

    unknown = ToolResult("c2", "b", "refund_once", "error", "outcome unknown: it may have run", "x")
    ran_once = check(results=[unknown])
    assert ran_once.tools["refund_once"].outcome_unknown == 1
    assert ran_once.tools["refund_once"].unknown_run_once == 1
    assert ran_once.problems(EXACTLY_ONCE) == []

    never_ran = check([ONCE_EACH[0]], results=[unknown])
    figures = never_ran.tools["refund_once"]
    assert (figures.unknown_not_run, figures.never_run, figures.executions) == (1, 1, 0)
    assert never_ran.problems(EXACTLY_ONCE) == []


def test_a_call_that_never_ran_without_an_unknown_outcome_is_found() -> None:
    failed = ToolResult("c1", "a", "refund_keyed", "error", "unknown tool 'refund_keyed'", "x")
    result = check([ONCE_EACH[1]], results=[failed])
    assert result.tools["refund_keyed"].never_run == 1
    assert result.problems(AT_LEAST_ONCE) == ["refund_keyed: calls never run=1"]


def test_outcome_unknown_is_read_from_the_status_or_the_error() -> None:
    assert is_outcome_unknown("unknown", None)
    assert is_outcome_unknown("error", "Outcome unknown after a crash")
    assert is_outcome_unknown("error", "the call is uncertain")
    assert not is_outcome_unknown("error", "card declined")
    assert not is_outcome_unknown("ok", None)


def test_repeats_under_a_new_call_id_are_told_from_the_tools_own_call_ids() -> None:
    same_id = check([*ONCE_EACH, run("k1", "a", deduplicated=True)])
    assert same_id.tools["refund_keyed"].beyond_one_under_new_call_id == 0
    new_id = check([*ONCE_EACH, run("k1", "a2", deduplicated=True)])
    assert new_id.tools["refund_keyed"].beyond_one_under_new_call_id == 1


def test_without_call_ids_the_agents_tool_calls_bound_the_new_call_ids() -> None:
    executions = [run(), run(at=60.0), run(at=70.0), ONCE_EACH[1]]
    one_call = [ToolCalled("c1", "a", "refund_keyed", "e1")]
    assert (
        check(executions, called=one_call).tools["refund_keyed"].beyond_one_under_new_call_id == 0
    )
    two_calls = [*one_call, ToolCalled("c1", "a2", "refund_keyed", "e2")]
    figures = check(executions, called=two_calls).tools["refund_keyed"]
    assert (figures.executions_beyond_one, figures.beyond_one_under_new_call_id) == (2, 1)
    assert figures.effects_beyond_one == 2  # no key: every execution took effect


def test_a_model_call_repeated_after_a_kill_it_was_in_flight_at_is_allowed() -> None:
    # c1's tool step was answered after the kill; c2's 0.5 s before it (not yet recorded).
    requests = [
        model("c1", TOOL_STEP, KILL_AT - 0.1, KILL_AT + 0.1),
        model("c1", TOOL_STEP, KILL_AT + 5, KILL_AT + 5.2),
        model("c1", FINAL_STEP, KILL_AT + 6, KILL_AT + 6.2),
        model("c2", TOOL_STEP, KILL_AT - 0.7, KILL_AT - 0.5),
        model("c2", TOOL_STEP, KILL_AT + 5, KILL_AT + 5.2),
        model("c2", FINAL_STEP, KILL_AT + 6, KILL_AT + 6.2),
    ]
    result = check(requests=requests, kills=[Kill(AGENT, SIGKILL, KILL_AT)])
    figures = result.model
    assert (figures.tool_step_repeats, figures.tool_step_repeats_in_flight) == (2, 2)
    assert figures.in_flight_at_kills == 2
    assert result.problems(EXACTLY_ONCE) == []
    # Under SIGTERM the agent finishes what it started: any repeat is a problem.
    assert result.problems(AT_LEAST_ONCE, SIGTERM) == ["model calls repeated under SIGTERM=2"]


def test_a_model_call_repeated_although_it_was_answered_well_before_any_kill_is_found() -> None:
    requests = [
        *CLEAN_MODEL[:3],
        model("c2", FINAL_STEP, KILL_AT - 3.2, KILL_AT - 3),
        model("c2", FINAL_STEP, KILL_AT + 5, KILL_AT + 5.2),
    ]
    result = check(requests=requests, kills=[Kill(AGENT, SIGKILL, KILL_AT)])
    assert (result.model.final_step_repeats, result.model.final_step_repeats_in_flight) == (1, 0)
    assert result.problems(AT_LEAST_ONCE) == [
        "model repeats not in flight at a kill=1",
        "model calls repeated=1 > in flight at the kills=0",
    ]
    assert "called again" in result.examples[0]


def test_a_kill_of_the_tools_service_explains_no_model_repeat() -> None:
    requests = [
        *CLEAN_MODEL,
        model("c1", TOOL_STEP, KILL_AT - 0.1, KILL_AT + 0.1),
        model("c1", TOOL_STEP, KILL_AT + 5, KILL_AT + 5.2),
    ]
    result = check(requests=requests, kills=[Kill(TOOLS, SIGKILL, KILL_AT)])
    assert result.model.repeats_not_in_flight == 2
    assert result.model.in_flight_at_kills == 0


def test_a_missing_reply_and_an_apology_are_found() -> None:
    apology = Reply("c2", "Sorry, I cannot answer right now.", "r2")
    result = check(replies=[CLEAN_REPLIES[0], apology])
    assert (result.replies.missing, result.replies.unexpected) == (1, 1)
    assert result.problems(AT_LEAST_ONCE) == ["replies missing=1", "replies unexpected=1"]
    assert "no reply in c2" in result.examples


def test_a_conversation_id_inside_another_is_not_an_answer() -> None:
    result = check(replies=[CLEAN_REPLIES[0], Reply("c2", "for c21: done", "r2")])
    assert result.replies.missing == 1


def test_a_reply_repeated_under_its_own_id_is_allowed_at_least_once_only() -> None:
    result = check(replies=[*CLEAN_REPLIES, CLEAN_REPLIES[0]])
    replies = result.replies
    assert (replies.duplicates, replies.duplicate_ids, replies.duplicates_with_another_id) == (
        1,
        1,
        0,
    )
    assert replies.duplicates_same_text == 1
    assert result.problems(AT_LEAST_ONCE) == []
    assert result.problems(EXACTLY_ONCE) == ["replies duplicates=1", "replies duplicate_ids=1"]


def test_a_reply_repeated_under_another_id_is_a_problem_in_either_mode() -> None:
    again = Reply("c1", "Refund of o1 for c1: not confirmed.", "r1-again")
    result = check(replies=[*CLEAN_REPLIES, again])
    assert result.replies.duplicates_with_another_id == 1
    assert result.replies.duplicates_same_text == 0  # counted by content, not by its words
    assert result.problems(AT_LEAST_ONCE) == ["replies duplicates_with_another_id=1"]
    assert "replies duplicates_with_another_id=1" in result.problems(EXACTLY_ONCE)
