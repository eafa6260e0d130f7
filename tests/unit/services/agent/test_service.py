"""The agent's handlers of the conversation's own events, driven directly: a turn through
its tool call, tool results, history, context updates, timers; and how the service is built."""

from __future__ import annotations

import json

from pipeline.config import Settings
from pipeline.events.model import Event, Metadata
from pipeline.services.agent import Agent, assemble
from tests.unit.services.agent.handler_support import (
    ADDRESS,
    Harness,
    context_updated,
    message,
    tool_result,
)


async def test_arithmetic_turn_calls_the_calculator_and_answers_with_its_result() -> None:
    agent = await Harness().start()
    question = message("what is 12*7?")
    (called,) = await agent.send(question)
    assert called.type == "tool_called"
    assert called["tool"] == "calculator"
    assert json.loads(called["arguments_json"]) == {"expression": "12*7"}
    assert called["depth"] == 0
    assert called["timeout_ms"] == 10000
    assert called.metadata.causation_id == question.id
    assert called.metadata.correlation_id == question.id
    assert agent.state()["turns"][str(question.id)]["pending"] == [called["call_id"]]
    (record,) = agent.last_records
    assert record.topic == "agent_state_changelog" and record.key == "c1"

    result = tool_result(called, {"value": 84})
    (answer,) = await agent.send(result)
    assert answer.type == "response_ready"
    assert answer["text"] == "12*7 = 84"
    assert answer["reply_to"] == ADDRESS
    assert answer["in_reply_to"] == "m1"
    assert answer["proactive"] is False
    assert answer["ingress_at"] == question.metadata.occurred_at
    assert answer.metadata.causation_id == result.id
    assert answer.metadata.correlation_id == question.id
    state = agent.state()
    assert state["turns"] == {}
    assert [(h["role"], h["text"]) for h in state["history"]] == [
        ("user", "what is 12*7?"),
        ("assistant", "12*7 = 84"),
    ]
    assert state["reply_to"] == ADDRESS
    assert state["v"] == 1


async def test_a_result_for_an_unknown_call_is_ignored() -> None:
    agent = await Harness().start()
    (called,) = await agent.send(message("what is 1+1"))
    stray = Event(called.metadata, {**called.data, "call_id": "nobody-asked"})
    assert await agent.send(tool_result(stray, {"value": 2})) == []
    assert agent.last_records == [], "nothing changes, nothing is written"
    labels = {"service": "agent", "reason": "unknown_call"}
    assert agent.registry.get_sample_value("pipeline_agent_ignored_events_total", labels) == 1
    # The real result still finishes the turn; a repeat of it is then unknown too.
    result = tool_result(called, {"value": 2})
    (answer,) = await agent.send(result)
    assert answer["text"] == "1+1 = 2"
    assert await agent.send(result) == []


async def test_a_failed_tool_reaches_the_model_as_an_error() -> None:
    agent = await Harness().start()
    (called,) = await agent.send(message("what is 1/0?"))
    (answer,) = await agent.send(tool_result(called, None, status="error"))
    assert answer["text"] == "Sorry, the calculator tool failed (error): it broke."


async def test_history_is_windowed_and_a_repeated_message_is_remembered_once() -> None:
    agent = await Harness(history_window=4).start()
    repeated = message("turn 0")
    await agent.send(repeated)
    again = await agent.send(repeated)
    assert again[0]["text"] == "You said: turn 0"
    for i in range(1, 4):
        await agent.send(message(f"turn {i}"))
    history = agent.state()["history"]
    assert [h["text"] for h in history] == [
        "turn 2",
        "You said: turn 2",
        "turn 3",
        "You said: turn 3",
    ]
    (answer,) = await agent.send(message("what did I say?"))
    assert answer["text"] == 'You said: "turn 3"'


async def test_context_updates_merge_facts_and_send_proactive_messages() -> None:
    agent = await Harness().start()
    # Before the user ever wrote there is no address: facts kept, message not sent.
    assert await agent.send(context_updated({"plan": "pro"}, "Welcome!")) == []
    assert agent.state()["facts"] == {"plan": "pro"}
    await agent.send(message("hello"))
    (sent,) = await agent.send(context_updated({"ticket_status": "resolved"}, "Is it solved?"))
    assert sent["text"] == "Is it solved?"
    assert sent["proactive"] is True
    assert sent["reply_to"] == ADDRESS
    assert sent["in_reply_to"] is None
    assert agent.state()["facts"] == {"plan": "pro", "ticket_status": "resolved"}
    (answer,) = await agent.send(message("what is my ticket status?"))
    assert answer["text"] == "Your ticket status is resolved."


async def test_other_timers_are_ignored() -> None:
    agent = await Harness().start()
    metadata = Metadata.new("timer_fired", "c1", tenant_id="t1", producer="scheduler")
    other = Event(
        metadata,
        {
            "timer_id": "reminder:1",
            "purpose": "reminder",
            "due_at": metadata.occurred_at,
            "payload_json": None,
        },
    )
    assert await agent.send(other) == []


def test_agent_is_built_with_range_assignment_and_its_handlers() -> None:
    service, agent = assemble(Settings(metrics_port=0))
    assert isinstance(agent, Agent)
    assert service.name == "agent"
    assert service.assignment_strategy == "range"
    assert sorted(h.event_type for h in service.handlers) == [
        "approval_decided",
        "context_updated",
        "handoff_released",
        "message_received",
        "operator_message",
        "timer_fired",
        "tool_outcome_decided",
        "tool_result",
    ]
    assert service.emits is not None
    assert {"handoff_requested", "approval_requested"} <= set(service.emits)
    # The store restores first; then the open handoffs and approvals are recounted.
    assert len(service.assigned_hooks) == 2 and len(service.revoked_hooks) == 2
