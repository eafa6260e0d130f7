"""Tool calls that wait for an operator, through the agent's real runtime in memory
(``TestService``): asked, approved (arguments maybe edited), denied, expired, late."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from pipeline.events.model import Event
from pipeline.llm import Completion
from tests.unit.services.agent.agent_support import ScriptedProvider, call, running_agent

WAITING = "This needs a person's approval first; I will come back to you here."
CALCULATOR = {"*": ["calculator"]}


def result(called: Event, value: Any) -> dict[str, Any]:
    """The tools service's answer to ``called``."""
    return {
        "call_id": called["call_id"],
        "tool": called["tool"],
        "status": "ok",
        "result_json": json.dumps(value),
        "error": None,
        "duration_ms": 1,
    }


def decided(requested: Event, decision: str, **extra: Any) -> dict[str, Any]:
    return {
        "approval_id": requested["approval_id"],
        "decision": decision,
        "operator_id": "op-ada",
        "arguments_json": None,
        "note": None,
        **extra,
    }


def fired(timer: Event) -> dict[str, Any]:
    keys = ("timer_id", "purpose", "due_at", "payload_json")
    return {k: timer[k] for k in keys}


async def test_a_tool_needing_approval_waits_then_runs_when_approved() -> None:
    async with running_agent(approval_tools=CALCULATOR, approval_timeout_seconds=600) as run:
        asked = await run.user("what is 12*7?")
        assert run.outputs("tool_called") == [], "approval_requested instead of tool_called"
        (requested,) = run.outputs("approval_requested")
        assert requested["tool"] == "calculator"
        assert json.loads(requested["arguments_json"]) == {"expression": "12*7"}
        assert requested["approval_id"].startswith("approval_")
        expires_in = requested["expires_at"] - requested.metadata.occurred_at
        assert timedelta(seconds=599) < expires_in <= timedelta(seconds=601)
        (timer,) = run.outputs("timer_requested")
        assert (timer["action"], timer["purpose"]) == ("schedule", "approval_expiry")
        assert timer["due_at"] == requested["expires_at"]
        assert json.loads(timer["payload_json"]) == {"approval_id": requested["approval_id"]}
        (waiting,) = run.outputs("response_ready")
        assert (waiting["text"], waiting["in_reply_to"]) == (WAITING, asked["external_id"])
        assert run.metric("pipeline_approvals_pending") == 1

        await run.send("approval_decided", decided(requested, "approved"))
        (called,) = run.outputs("tool_called")
        assert called["call_id"] == requested["call_id"]
        assert json.loads(called["arguments_json"]) == {"expression": "12*7"}
        cancel = run.outputs("timer_requested")[1]
        assert (cancel["timer_id"], cancel["action"]) == (timer["timer_id"], "cancel")
        await run.send("tool_result", result(called, {"value": 84}))
        assert run.texts() == [WAITING, "12*7 = 84"]
        assert run.metric("pipeline_approvals_pending") == 0
        assert run.metric("pipeline_approvals_total", decision="approved") == 1


async def test_edited_arguments_run_when_the_tools_schema_accepts_them() -> None:
    async with running_agent(approval_tools=CALCULATOR, approval_waiting_text=None) as run:
        await run.user("what is 12*7?")
        assert run.outputs("response_ready") == [], "not told to wait when not configured"
        (requested,) = run.outputs("approval_requested")
        wrong = decided(requested, "approved", arguments_json='{"expr": 5}')
        await run.send("approval_decided", wrong)
        (letter,) = run.svc.dead_letters()
        assert "do not fit its schema" in letter["error_message"]
        assert "'expression' is a required property" in letter["error_message"]
        assert run.outputs("tool_called") == []
        assert run.metric("pipeline_approvals_pending") == 1, "still waiting for a decision"

        edited = decided(requested, "approved", arguments_json='{"expression": "2*3"}')
        await run.send("approval_decided", edited)
        (called,) = run.outputs("tool_called")
        assert json.loads(called["arguments_json"]) == {"expression": "2*3"}
        await run.send("tool_result", result(called, {"value": 6}))
        assert run.texts() == ["2*3 = 6"], "the model sees the arguments that ran"


async def test_the_model_reads_the_customers_note_never_the_internal_reason() -> None:
    provider = ScriptedProvider(call("calculator", expression="12*7"), Completion(text="ok"))
    async with running_agent(provider, approval_tools=CALCULATOR) as run:
        await run.user("what is 12*7?")
        (requested,) = run.outputs("approval_requested")
        denial = decided(
            requested,
            "denied",
            note="we cannot do that today",
            internal_reason="the account is under review for fraud",
        )
        await run.send("approval_decided", denial)
        last = provider.requests[-1]
        told = json.dumps([last.system, *(m.content for m in last.messages)])
    assert "we cannot do that today" in told
    assert "fraud" not in told and "under review" not in told


async def test_a_denied_call_is_answered_as_denied() -> None:
    async with running_agent(approval_tools=CALCULATOR) as run:
        await run.user("what is 12*7?")
        (requested,) = run.outputs("approval_requested")
        await run.send("approval_decided", decided(requested, "denied", note="not today"))
        assert run.outputs("tool_called") == []
        assert run.texts()[-1] == (
            "Sorry, the calculator tool failed (denied): an operator denied this call (not today)."
        )
        assert run.metric("pipeline_approvals_total", decision="denied") == 1
        # A second decision on a closed approval changes nothing.
        await run.send("approval_decided", decided(requested, "approved"))
        assert run.outputs("tool_called") == []
        assert run.metric("pipeline_agent_ignored_events_total", reason="late_decision") == 1


async def test_an_approval_expires_and_a_late_decision_is_ignored() -> None:
    async with running_agent(approval_tools=CALCULATOR, approval_timeout_seconds=30) as run:
        await run.user("what is 12*7?")
        (requested,) = run.outputs("approval_requested")
        (timer,) = run.outputs("timer_requested")
        await run.send("timer_fired", fired(timer))
        assert run.texts()[-1] == (
            "Sorry, the calculator tool failed (expired): no operator approved or denied "
            "this call within 30 seconds."
        )
        assert run.metric("pipeline_approvals_total", decision="expired") == 1
        assert run.metric("pipeline_approvals_pending") == 0
        answers = len(run.texts())
        await run.send("approval_decided", decided(requested, "approved"))
        assert run.outputs("tool_called") == []
        assert len(run.texts()) == answers
        assert run.metric("pipeline_agent_ignored_events_total", reason="late_decision") == 1
        # The expiry firing again (a repeat) is stale.
        await run.send("timer_fired", fired(timer))
        assert len(run.texts()) == answers


async def test_approval_is_per_tenant() -> None:
    async with running_agent(approval_tools={"strict": ["calculator"]}) as run:
        await run.user("what is 2+2?", conversation="a", tenant="strict")
        await run.user("what is 2+2?", conversation="b", tenant="relaxed")
        assert [e.conversation_id for e in run.outputs("approval_requested")] == ["a"]
        assert [e.conversation_id for e in run.outputs("tool_called")] == ["b"]


async def test_decisions_of_another_tenant_are_dead_lettered() -> None:
    async with running_agent(approval_tools=CALCULATOR) as run:
        await run.user("what is 2+2?")
        (requested,) = run.outputs("approval_requested")
        await run.send("approval_decided", decided(requested, "approved"), tenant="t2")
        (letter,) = run.svc.dead_letters()
        assert "belongs to tenant 't1'" in letter["error_message"]
        assert run.outputs("tool_called") == []


async def test_a_handoff_closes_pending_approvals() -> None:
    async with running_agent(approval_tools=CALCULATOR) as run:
        await run.user("what is 2+2?")
        (requested,) = run.outputs("approval_requested")
        await run.user("let me talk to a person")
        assert run.metric("pipeline_approvals_pending") == 0
        cancel = run.outputs("timer_requested")[-1]
        assert (cancel["purpose"], cancel["action"]) == ("approval_expiry", "cancel")
        await run.send("approval_decided", decided(requested, "approved"))
        assert run.outputs("tool_called") == []


async def test_a_decision_ends_with_the_agents_outcome_a_late_one_ignored() -> None:
    async with running_agent(approval_tools=CALCULATOR) as run:
        await run.user("what is 12*7?")
        (requested,) = run.outputs("approval_requested")
        first = await run.send("approval_decided", decided(requested, "approved"))
        late = await run.send("approval_decided", decided(requested, "denied"))
        unknown = await run.send(
            "approval_decided", {**decided(requested, "denied"), "approval_id": "approval_x"}
        )
        outcomes = {e.metadata.causation_id: e for e in run.outputs("operator_action_handled")}
        assert outcomes[first.id]["outcome"] == "accepted"
        assert (outcomes[late.id]["outcome"], outcomes[late.id]["reason"]) == (
            "ignored",
            "the approval was decided before, or expired",
        )
        assert outcomes[unknown.id]["reason"] == "the agent is waiting for no such approval"
        assert {e["action"] for e in outcomes.values()} == {"approval_decided"}
