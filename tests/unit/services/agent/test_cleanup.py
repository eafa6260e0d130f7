"""Human cleanup per tenant and agent version, as the agent counts it."""

from __future__ import annotations

import asyncio
import json

import pytest

from pipeline.cleanup import repeats
from pipeline.llm import Completion
from tests.unit.services.agent.agent_support import AgentRun, ScriptedProvider, call, running_agent

V = {"agent_version": "v2", "tenant": "t1"}


def cleanup(run: AgentRun, name: str, **labels: str) -> float:
    return run.metric(f"pipeline_cleanup_{name}", **V, **labels)


def test_a_repeat_shares_half_the_question_s_words() -> None:
    assert repeats("where is my parcel 1234?", "my parcel still is not here, where is it")
    assert not repeats("where is my parcel 1234?", "thanks, bye")
    assert repeats("hi", "HI ")
    assert not repeats("hi", "hello")


async def test_answers_reopened_by_a_repeat_a_handoff_and_an_operator() -> None:
    async with running_agent(version="v2") as run:
        await run.user("where is my parcel?")
        await run.user("my parcel, where is it?")  # the same question again: reopened
        await run.user("thanks for the help")  # another question: the answer before stands
        await run.user("I want to talk to a human")  # reopens the answer to "thanks..."
        await run.send("operator_message", {"operator_id": "op-ada", "text": "Hello!"})
        await run.send("operator_message", {"operator_id": "op-ada", "text": "Done."})
        assert cleanup(run, "conversations_total") == 1
        assert cleanup(run, "turns_total") == 4
        assert cleanup(run, "first_answers_total") == 3
        assert cleanup(run, "first_answers_reopened_total", reason="repeat_question") == 1
        assert cleanup(run, "first_answers_reopened_total", reason="handoff") == 1
        assert cleanup(run, "first_answers_reopened_total", reason="operator_reply") == 0
        assert cleanup(run, "handoffs_total", requested_by="user") == 1
        assert cleanup(run, "operator_replies_total") == 2
        assert run.state()["last_answer"] is None


async def test_an_answer_older_than_the_window_is_resolved() -> None:
    async with running_agent(version="v2", cleanup_window_seconds=0.05) as run:
        await run.user("where is my parcel?")
        await asyncio.sleep(0.1)
        await run.send("operator_message", {"operator_id": "op-ada", "text": "Here I am."})
        assert cleanup(run, "first_answers_total") == 1
        assert cleanup(run, "handoffs_total", requested_by="operator") == 1
        for reason in ("handoff", "operator_reply", "repeat_question"):
            assert cleanup(run, "first_answers_reopened_total", reason=reason) == 0


@pytest.mark.parametrize(
    ("decision", "edited", "outcome"),
    [
        ("approved", None, "approved"),
        ("approved", '{"expression": "2+2"}', "edited"),
        ("denied", None, "denied"),
    ],
)
async def test_approvals_are_counted_by_how_they_ended(
    decision: str, edited: str | None, outcome: str
) -> None:
    provider = ScriptedProvider(call("calculator", expression="1+1"), Completion(text="2"))
    async with running_agent(provider, version="v2", approval_tools={"*": ["calculator"]}) as run:
        await run.user("what is 1+1?")
        [asked] = run.outputs("approval_requested")
        await run.send(
            "approval_decided",
            {
                "approval_id": asked["approval_id"],
                "decision": decision,
                "operator_id": "op-ada",
                "arguments_json": edited,
                "note": None,
            },
        )
        assert cleanup(run, "approvals_total", outcome="requested") == 1
        assert cleanup(run, "approvals_total", outcome=outcome) == 1
        others = {"approved", "edited", "denied", "expired"} - {outcome}
        assert all(cleanup(run, "approvals_total", outcome=o) == 0 for o in others)
        if outcome == "edited":
            [called] = run.outputs("tool_called")
            assert json.loads(called["arguments_json"]) == {"expression": "2+2"}


async def test_dead_letters_are_counted_per_tenant_as_the_runtime_writes_them() -> None:
    async with running_agent(version="v2") as run:
        await run.user("hello")
        await run.user("hello", tenant="t2")  # another tenant's event: refused
        await run.send("operator_message", {"operator_id": "a", "text": "x"}, conversation="c9")
        assert len(run.svc.dead_letters()) == 2
        assert cleanup(run, "dead_letters_total") == 1
        assert (
            run.metric("pipeline_cleanup_dead_letters_total", agent_version="v2", tenant="t2") == 1
        )
