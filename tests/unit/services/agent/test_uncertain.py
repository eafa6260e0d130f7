"""A tool call whose outcome is unknown, decided by an operator, through the agent's real
runtime in memory (``TestService``): the model reads the decision with a new turn and the
user is told what became of the action; once per call; into the handoff's log while a
person has the conversation; dead-lettered for a conversation the agent does not have or
of another tenant."""

from __future__ import annotations

import json
from typing import Any

from pipeline.events.model import Event, Metadata
from pipeline.llm import Completion
from pipeline.services.agent.uncertain import outcome_note
from tests.unit.services.agent.agent_support import (
    ADDRESS,
    AgentRun,
    ScriptedProvider,
    call,
    running_agent,
)

UNKNOWN = "outcome unknown: the tools service stopped while the call ran"


async def unknown_result(run: AgentRun, called: Event) -> Event:
    """What a tools service answers for an at-most-once call it found begun, never
    finished."""
    body = {
        "call_id": called["call_id"],
        "tool": called["tool"],
        "status": "unknown",
        "result_json": None,
        "error": UNKNOWN,
        "duration_ms": 0,
    }
    return await run.send("tool_result", body)


def decision(called: Event, outcome: str = "done", **fields: Any) -> dict[str, Any]:
    body = {
        "call_id": called["call_id"],
        "tool": called["tool"],
        "outcome": outcome,
        "operator_id": "ada",
        "result_json": None,
        "note": None,
    }
    return {**body, **fields}


async def test_the_user_hears_the_outcome_is_unknown_then_what_the_operator_found() -> None:
    async with running_agent() as run:  # the deterministic provider
        await run.user("what is 12*7?")
        (called,) = run.outputs("tool_called")
        await unknown_result(run, called)
        assert run.texts() == [
            f"I could not confirm whether the calculator action went through ({UNKNOWN}). "
            "A person will check what happened."
        ]
        decided = await run.send(
            "tool_outcome_decided",
            decision(called, result_json='{"value": 84}', note="the log shows 84"),
        )
        answer = run.outputs("response_ready")[-1]
        assert answer["text"] == (
            "An update on the calculator action I could not confirm: a person checked, and "
            "it was done. What they found: the log shows 84"
        )
        assert answer["reply_to"] == ADDRESS
        assert answer.metadata.causation_id == decided.id
        assert len(run.outputs("tool_called")) == 1, "the tool is not called again"
        state = run.state()
        assert state["decided_calls"] == [called["call_id"]]
        assert state["context_note"] is None, "the note is given once"
        assert state["turns"] == {}
        assert (state["history"][-1]["role"], state["history"][-1]["text"]) == (
            "assistant",
            answer["text"],
        )
        assert run.metric("pipeline_agent_turns_total", outcome="answered") == 2


async def test_the_model_reads_the_decision_with_the_conversation() -> None:
    provider = ScriptedProvider(
        call("calculator", expression="12*7"),
        Completion(text="I could not confirm it."),
        Completion(text="It went through after all."),
    )
    async with running_agent(provider) as run:
        await run.user("what is 12*7?")
        (called,) = run.outputs("tool_called")
        await unknown_result(run, called)
        unknown = json.loads(provider.requests[1].messages[-1].content or "")
        assert unknown == {"status": "unknown", "error": UNKNOWN}
        body = decision(called, "failed", note="the shop has no such refund")
        await run.send("tool_outcome_decided", body)
        assert run.texts()[-1] == "It went through after all."
        request = provider.requests[2]
        assert [m.content for m in request.messages] == [
            "what is 12*7?",
            "I could not confirm it.",
        ]
        system = request.system
        assert (
            f"Operator ada checked the tool call calculator ({called['call_id']}), whose "
            "outcome was unknown, and marked it failed."
        ) in system
        assert "What the operator found: the shop has no such refund" in system
        assert "The action did not take effect." in system


async def test_a_call_is_decided_once() -> None:
    async with running_agent() as run:
        await run.user("what is 12*7?")
        (called,) = run.outputs("tool_called")
        await unknown_result(run, called)
        await run.send("tool_outcome_decided", decision(called))
        answered = run.texts()
        # Another operator's decision on the same call (two console replicas), and the same
        # event again (as after a crash): nothing more is said.
        again = await run.send("tool_outcome_decided", decision(called, "failed"))
        await run.svc.send_event(again)
        await run.svc.settle()
        assert run.texts() == answered
        assert run.metric("pipeline_agent_ignored_events_total", reason="late_decision") == 2


async def test_while_a_person_has_the_conversation_the_decision_waits_in_the_log() -> None:
    provider = ScriptedProvider(
        call("calculator", expression="12*7"),
        Completion(text="Unknown for now."),
        Completion(text="Welcome back."),
    )
    async with running_agent(provider) as run:
        await run.user("what is 12*7?")
        (called,) = run.outputs("tool_called")
        await unknown_result(run, called)
        await run.user("I want to talk to a human")
        before = run.texts()
        await run.send("tool_outcome_decided", decision(called, note="done by hand"))
        assert run.texts() == before, "the agent says nothing while a person has it"
        (entry,) = run.state()["handoff"]["log"][-1:]
        assert (entry["role"], entry["operator_id"]) == ("operator", "ada")
        assert "marked it done" in entry["text"]
        await run.send("handoff_released", {"operator_id": "ada", "note": None})
        await run.user("so?")
        assert "What the operator found: done by hand" in provider.requests[-1].system


async def test_a_decision_elsewhere_is_dead_lettered() -> None:
    async with running_agent() as run:
        await run.user("what is 12*7?")
        (called,) = run.outputs("tool_called")
        await run.send("tool_outcome_decided", decision(called), tenant="t2")
        await run.send("tool_outcome_decided", decision(called), conversation="nope")
        reasons = sorted(d["error_message"] for d in run.svc.dead_letters())
        assert len(reasons) == 2
        assert "belongs to tenant 't1'" in reasons[0]
        assert "which the agent does not have" in reasons[1]
        assert run.state()["decided_calls"] == []
        assert len(run.texts()) == 0, "the calculator's answer is still awaited"


def test_the_note_says_who_decided_what_and_what_they_found() -> None:
    metadata = Metadata.new("tool_outcome_decided", "c1", tenant_id="t1", producer="console")
    data = {
        "call_id": "call_9",
        "tool": "refund",
        "outcome": "done",
        "operator_id": "bob",
        "result_json": '{"refund_id": "r-1"}',
        "note": "the shop shows it",
    }
    assert outcome_note(Event(metadata, data)).splitlines() == [
        "Operator bob checked the tool call refund (call_9), whose outcome was unknown, and "
        "marked it done.",
        "The action took effect: do not call the tool again for it.",
        'What the tool did: {"refund_id": "r-1"}',
        "What the operator found: the shop shows it",
        "Tell the user what became of the action they asked for.",
    ]
    bare = {**data, "outcome": "failed", "result_json": None, "note": None}
    assert outcome_note(Event(metadata, bare)).splitlines()[1:] == [
        "The action did not take effect.",
        "Tell the user what became of the action they asked for.",
    ]
