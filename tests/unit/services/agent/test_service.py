"""The agent's handlers, driven directly: turns, tools, follow-ups, context, state."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Mapping
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from pipeline.config import Settings, bundled_dir
from pipeline.config.sections import LLMSettings
from pipeline.errors import RejectEvent
from pipeline.events.catalog import SchemaCatalog
from pipeline.events.model import Event, Metadata
from pipeline.events.serde import SingleObjectSerde
from pipeline.llm import ChatRequest, Completion, LLMError, ToolCall, create_provider
from pipeline.runtime.context import Context
from pipeline.services.agent import Agent, assemble
from pipeline.services.agent.conversation import Conversation
from pipeline.services.agent.service import LLM_DOWN, TOO_DEEP
from pipeline.state.changelog import Restored
from pipeline.toolbox import builtin_tools
from pipeline.toolbox.tool_offer import StaticOffer

SERDE = SingleObjectSerde(SchemaCatalog.load(bundled_dir("schemas")))
ADDRESS = {"channel": "web", "address": "http://127.0.0.1/cb", "thread_id": None}


def empty_changelog(topics: list[str], starts: dict[int, int | None]) -> dict[int, Restored]:
    return {p: Restored(p, 0, 0, True) for p in starts}


class Harness:
    """An agent with an in-memory changelog; ``send`` runs a handler like the runtime."""

    def __init__(self, provider: Any = None, attempt: int = 1, **agent: Any) -> None:
        settings = Settings(metrics_port=0, agent=agent, max_retries=2)
        self.registry = CollectorRegistry()
        # The offer the tools service makes by default: its built-ins, as it advertises them.
        offer = StaticOffer.of(builtin_tools(settings.tools))
        service, self.agent = assemble(
            settings, provider=provider, registry=self.registry, tools=offer
        )
        self.service = service
        self.agent.store._read = empty_changelog
        self.attempt = attempt
        self.handlers = {h.event_type: h.fn for h in service.handlers}

    async def start(self) -> Harness:
        await self.agent.store.assigned([("message_received", 0)])
        return self

    async def send(self, event: Event, attempt: int | None = None) -> list[Event]:
        ctx = Context(
            event,
            service="agent",
            attempt=attempt or self.attempt,
            serde=SERDE,
            topic_for=lambda name: name,
            traceparent=None,
            logger=logging.getLogger("test"),
            partition=0,
        )
        await self.handlers[event.type](event, ctx)
        self.last_records = [o for o in ctx.outgoing if o.event is None]
        return [o.event for o in ctx.outgoing if o.event is not None]

    def state(self, conversation: str = "c1") -> dict[str, Any]:
        value = self.agent.store.lookup(0, conversation)
        assert value is not None
        return value


def message(text: str, conversation: str = "c1", external_id: str | None = "m1") -> Event:
    metadata = Metadata.new("message_received", conversation, tenant_id="t1", producer="gateway")
    return Event(
        metadata,
        {
            "channel": "web",
            "sender_id": "u1",
            "sender_name": None,
            "text": text,
            "reply_to": ADDRESS,
            "external_id": external_id,
            "attachments": [],
            "attributes": {},
        },
    )


def tool_result(called: Event, result: Mapping[str, Any] | None, status: str = "ok") -> Event:
    """What the tools service answers to ``called``."""
    metadata = called.metadata.caused("tool_result", producer="tools")
    return Event(
        metadata,
        {
            "call_id": called["call_id"],
            "tool": called["tool"],
            "status": status,
            "result_json": json.dumps(result) if result is not None else None,
            "error": None if status == "ok" else "it broke",
            "duration_ms": 3,
        },
    )


def timer_fired(requested: Event) -> Event:
    metadata = requested.metadata.caused("timer_fired", producer="scheduler")
    return Event(
        metadata,
        {
            "timer_id": requested["timer_id"],
            "purpose": requested["purpose"],
            "due_at": requested["due_at"],
            "payload_json": None,
        },
    )


def context_updated(facts: dict[str, str], proactive: str | None = None) -> Event:
    metadata = Metadata.new("context_updated", "c1", tenant_id="t1", producer="webhooks")
    return Event(metadata, {"source": "crm", "facts": facts, "proactive_message": proactive})


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


class ScriptedProvider:
    """Returns the scripted completions in order and records the requests."""

    name = "scripted"
    model = "m"

    def __init__(self, *completions: Completion | Exception) -> None:
        self.completions = list(completions)
        self.requests: list[ChatRequest] = []

    async def complete(self, request: ChatRequest) -> Completion:
        self.requests.append(request)
        item = self.completions.pop(0)
        if isinstance(item, Exception):
            raise item
        return item

    async def aclose(self) -> None:
        return None


def calls(*names: str) -> Completion:
    return Completion(tool_calls=tuple(ToolCall(f"id-{n}", n, {}) for n in names))


async def test_the_tool_loop_stops_at_max_tool_depth_with_an_apology() -> None:
    provider = ScriptedProvider(calls("current_time"), calls("current_time"), calls("current_time"))
    agent = await Harness(provider, max_tool_depth=2).start()
    (first,) = await agent.send(message("loop forever"))
    (second,) = await agent.send(tool_result(first, {"iso": "x"}))
    assert (first["depth"], second["depth"]) == (0, 1)
    (answer,) = await agent.send(tool_result(second, {"iso": "y"}))
    assert answer.type == "response_ready"
    assert answer["text"] == TOO_DEEP
    assert agent.state()["turns"] == {}
    labels = {"service": "agent", "outcome": "too_deep"}
    assert agent.registry.get_sample_value("pipeline_agent_turns_total", labels) == 1


async def test_parallel_tool_calls_wait_for_every_result() -> None:
    provider = ScriptedProvider(
        calls("current_time", "knowledge_lookup"), Completion(text="both done")
    )
    agent = await Harness(provider).start()
    first, second = await agent.send(message("two things"))
    assert first["call_id"] != second["call_id"]
    assert await agent.send(tool_result(second, {"answer": "b"})) == []
    (answer,) = await agent.send(tool_result(first, {"iso": "a"}))
    assert answer["text"] == "both done"
    roles = [m.role for m in provider.requests[-1].messages]
    assert roles == ["user", "assistant", "tool", "tool"]
    assert provider.requests[-1].messages[-2].tool_call_id == second["call_id"]


async def test_a_failed_tool_reaches_the_model_as_an_error() -> None:
    agent = await Harness().start()
    (called,) = await agent.send(message("what is 1/0?"))
    (answer,) = await agent.send(tool_result(called, None, status="error"))
    assert answer["text"] == "Sorry, the calculator tool failed (error): it broke."


async def test_a_model_failure_is_apologised_for_at_once_without_a_handler_retry() -> None:
    provider = ScriptedProvider(LLMError("down"))
    agent = await Harness(provider).start()
    (answer,) = await agent.send(message("hello"), attempt=1)
    assert answer["text"] == LLM_DOWN
    assert len(provider.requests) == 1


class DownModel(BaseHTTPRequestHandler):
    """A chat-completions server that always answers 503, and counts the requests."""

    requests = 0

    def do_POST(self) -> None:
        type(self).requests += 1
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        body = b'{"error": {"message": "overloaded"}}'
        self.send_response(503)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        return None


async def test_llm_retries_do_not_nest_inside_handler_retries() -> None:
    """One message costs at most 1 + PIPELINE_LLM__MAX_RETRIES model calls per step of
    the tool loop (3 here), not that many per handler attempt (it was 4 x 3 = 12)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), DownModel)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    llm = LLMSettings(
        provider="openai",
        base_url=f"http://127.0.0.1:{server.server_address[1]}/v1",
        max_retries=2,
        backoff_initial_seconds=0.01,
        backoff_max_seconds=0.02,
    )
    provider = create_provider(llm, registry=CollectorRegistry(), service="agent")
    try:
        agent = await Harness(provider).start()
        (answer,) = await agent.send(message("hello"), attempt=1)
    finally:
        await provider.aclose()
        server.shutdown()
        server.server_close()
    assert answer["text"] == LLM_DOWN
    assert DownModel.requests == 3


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


async def test_follow_up_is_scheduled_after_an_answer_and_cancelled_by_a_reply() -> None:
    agent = await Harness(follow_up_seconds=30).start()
    answer, scheduled = await agent.send(message("hello"))
    assert answer.type == "response_ready"
    assert scheduled.type == "timer_requested"
    assert scheduled["timer_id"] == "follow_up:c1"
    assert scheduled["action"] == "schedule"
    assert scheduled["purpose"] == "follow_up"
    due = scheduled["due_at"] - answer.metadata.occurred_at
    assert timedelta(seconds=29) < due <= timedelta(seconds=31)
    assert agent.state()["follow_up"]["timer_id"] == "follow_up:c1"

    cancel, _, rescheduled = await agent.send(message("thanks"))
    assert cancel.type == "timer_requested"
    assert (cancel["timer_id"], cancel["action"], cancel["due_at"]) == (
        "follow_up:c1",
        "cancel",
        None,
    )
    # The timer of the first answer fires late (cancel raced it): not wanted any more.
    assert await agent.send(timer_fired(scheduled)) == []
    (follow_up,) = await agent.send(timer_fired(rescheduled))
    assert follow_up["text"] == "Is there anything else I can help you with?"
    assert follow_up["proactive"] is True
    assert follow_up["reply_to"] == ADDRESS
    assert follow_up.metadata.correlation_id == rescheduled.metadata.correlation_id
    assert agent.state()["follow_up"] is None
    assert await agent.send(timer_fired(rescheduled)) == [], "sent once"


async def test_no_follow_up_while_a_turn_waits_for_tools() -> None:
    agent = await Harness(follow_up_seconds=5).start()
    (called,) = await agent.send(message("what is 2*3?"))
    answer, scheduled = await agent.send(tool_result(called, {"value": 6}))
    assert answer["text"] == "2*3 = 6"
    assert scheduled["action"] == "schedule"


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


async def test_without_a_calculator_offered_the_model_says_so() -> None:
    harness = Harness()
    harness.agent.tools = StaticOffer(())
    agent = await harness.start()
    (answer,) = await agent.send(message("what is 12*7?"))
    assert "calculator is not available" in answer["text"]


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
        "tool_result",
    ]
    assert service.emits is not None
    assert {"handoff_requested", "approval_requested"} <= set(service.emits)
    # The store restores first; then the open handoffs and approvals are recounted.
    assert len(service.assigned_hooks) == 2 and len(service.revoked_hooks) == 2


def foreign(event: Event, tenant: str, **data: Any) -> Event:
    """``event`` as if another tenant had sent it to the same conversation."""
    metadata = Metadata.new(event.type, event.conversation_id, tenant_id=tenant, producer="gw")
    return Event(metadata, {**event.data, **data})


async def test_an_event_of_another_tenant_is_rejected_and_changes_nothing() -> None:
    agent = await Harness().start()
    await agent.send(message("my card PIN is 4242"))
    before = agent.state()
    assert before["tenant"] == "t1"
    evil = {"channel": "web", "address": "https://evil/cb", "thread_id": None}
    for event in (
        foreign(message("what did I say?", external_id="m9"), "t2", reply_to=evil),
        foreign(context_updated({"x": "y"}, "Hello from t2"), "t2"),
    ):
        ctx = Context(
            event,
            service="agent",
            attempt=1,
            serde=SERDE,
            topic_for=lambda name: name,
            traceparent=None,
            logger=logging.getLogger("test"),
            partition=0,
        )
        with pytest.raises(RejectEvent) as info:
            await agent.handlers[event.type](event, ctx)
        assert "belongs to tenant 't1'" in str(info.value)
        assert ctx.outgoing == []  # no answer, no changelog write
    assert agent.state() == before
    refused = agent.registry.get_sample_value(
        "pipeline_agent_tenant_mismatch_total", {"service": "agent"}
    )
    assert refused == 2
    # The owner goes on as before, answered at its own address.
    (answer,) = await agent.send(message("and now?", external_id="m2"))
    assert answer["reply_to"] == ADDRESS


def test_state_without_a_tenant_reads_as_unowned() -> None:
    assert Conversation.from_json({"history": []}).tenant is None
    assert Conversation(tenant="t1").to_json()["tenant"] == "t1"
