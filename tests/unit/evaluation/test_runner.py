"""An evaluation run in memory: recorded conversations replayed through a candidate,
several at once, compared with what was recorded, checked, and handed over one by one."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from pipeline.errors import EvaluationError
from pipeline.evaluation import Candidate, ConversationResult, Evaluation, RecordedSet
from pipeline.evaluation.checks import Check
from pipeline.evaluation.reader import RecordedEvents
from pipeline.evaluation.runner import evaluate
from pipeline.events.wire import make_serde
from tests.unit.evaluation.recordings import OFFER, SETTINGS, record


def evaluation(candidate: Candidate, **options: object) -> Evaluation:
    return Evaluation(
        SETTINGS,
        make_serde(SETTINGS, register=False),
        RecordedSet(()),
        candidate,
        tools=OFFER,
        **options,  # type: ignore[arg-type]
    )


def no_refund(result: ConversationResult) -> None:
    assert not any("refund" in a for a in result.answers), "promises a refund"


async def test_the_same_agent_changes_nothing_and_a_changed_rule_is_counted() -> None:
    recorded = [
        await record("c1", ["hello", "what did I say?"]),
        await record("c2", ["I want to talk to a human"]),
        await record("c3", ["what time is it?"]),
    ]
    same: list[ConversationResult] = []
    assert await evaluate(evaluation(Candidate(), concurrency=2), same.append, recorded) == 3
    assert sorted(r.conversation_id for r in same) == ["c1", "c2", "c3"]
    assert [r.changed for r in same] == [False, False, False]
    assert all(r.candidate_seconds and r.baseline_seconds is None for r in same)

    rule = Candidate("agent", {"agent": {"handoff_phrases": {"*": ["hello"]}}})
    changed: list[ConversationResult] = []
    await evaluate(evaluation(rule, baseline=Candidate()), changed.append, recorded)
    by_id = {r.conversation_id: r for r in changed}
    assert (by_id["c1"].counts.new_handoffs, by_id["c1"].counts.lost_handoffs) == (1, 0)
    assert (by_id["c2"].counts.new_handoffs, by_id["c2"].counts.lost_handoffs) == (0, 1)
    assert not by_id["c3"].changed
    assert by_id["c3"].counts.recorded_approvals == by_id["c3"].counts.replayed_approvals == 1
    assert by_id["c1"].baseline_seconds is not None, "the baseline was replayed too"


async def test_checks_run_on_every_conversation() -> None:
    recorded = [await record("c1", ["I want a refund"]), await record("c2", ["hello"])]
    results: list[ConversationResult] = []
    checked = evaluation(Candidate(), checks=[Check("no_refund", no_refund)])
    await evaluate(checked, results.append, recorded)
    # pytest rewrites this module's asserts: the message gets the expression appended.
    outcome = {
        r.conversation_id: [(c.name, c.outcome, c.message.split("\n")[0]) for c in r.checks]
        for r in results
    }
    assert outcome == {
        "c1": [("no_refund", "failed", "promises a refund")],
        "c2": [("no_refund", "passed", "")],
    }


async def test_recorded_answers_replay_what_the_model_answered_then() -> None:
    recorded = [await record("c1", ["hello"])]
    results: list[ConversationResult] = []
    await evaluate(evaluation(Candidate(), answers="recorded"), results.append, recorded)
    [result] = results
    assert not result.changed
    assert result.answers == ["Hello! How can I help you today?"]


async def test_a_reader_failing_midway_stops_the_evaluation_with_its_error() -> None:
    first = await record("c1", ["hello"])

    def conversations() -> Iterator[RecordedEvents]:
        yield first
        raise EvaluationError("no record came from message_received[0] for 30s")

    results: list[ConversationResult] = []
    with pytest.raises(EvaluationError, match="no record came"):
        await asyncio.wait_for(
            evaluate(evaluation(Candidate()), results.append, conversations()), timeout=30
        )
    assert [r.conversation_id for r in results] == ["c1"]
