"""Recorded answers: a replay answers each model call as the model answered it when the
conversation was recorded, rebuilt from the agent's outputs; an input with no recorded
answer fails as a model outage would."""

from __future__ import annotations

import json

from pipeline.config import Settings
from pipeline.events.model import Event, Metadata
from pipeline.llm import Completion, LLMError, LLMProvider
from pipeline.llm.base import ChatRequest
from pipeline.llm.recorded import TAPE, RecordedAnswers, RecordedProvider
from pipeline.replay import compare, run_in_memory, select
from pipeline.runtime.service import Service
from pipeline.services.agent import assemble
from pipeline.services.agent.turns import LLM_DOWN
from pipeline.testing import TestService
from pipeline.toolbox import builtin_tools
from pipeline.toolbox.tool_offer import StaticOffer
from tests.unit.runtime_events import chat
from tests.unit.services.agent.agent_support import ScriptedProvider, call


def agent(provider: LLMProvider | None, settings: Settings) -> Service:
    service, _ = assemble(
        settings, provider=provider, tools=StaticOffer.of(builtin_tools(settings.tools))
    )
    return service


async def record(provider: ScriptedProvider) -> list[Event]:
    """A tool-using turn with a model that writes differently every time it is asked."""
    settings = Settings(metrics_port=0)
    async with TestService(agent(provider, settings)) as svc:
        question = await svc.send(
            "message_received", chat("what time is it?"), conversation_id="c1"
        )
        called = await svc.next_output("tool_called")
        result = Event(
            Metadata.new(
                "tool_result", "c1", tenant_id="tenant-1", producer="tools", cause=called.metadata
            ),
            {
                "call_id": called["call_id"],
                "tool": "current_time",
                "status": "ok",
                "result_json": json.dumps({"iso": "12:00"}),
                "error": None,
                "duration_ms": 1,
            },
        )
        await svc.send_event(result)
        answer = await svc.next_output("response_ready")
    return [question, called, result, answer]


async def test_a_replay_with_recorded_answers_repeats_production_without_asking_the_model() -> None:
    production = ScriptedProvider(call("current_time"), Completion(text="It is noon."))
    events = await record(production)
    settings = Settings(metrics_port=0, llm={"provider": "recorded"})
    service = agent(None, settings)
    recording = select("c1", events, service)
    answers = RecordedAnswers.from_outputs(recording.outputs)
    assert {a.text for a in answers.answers.values()} == {None, "It is noon."}
    replayed = await run_in_memory(service, recording.inputs, answers=answers)
    diff = compare(
        "c1", recording.inputs, recording.outputs, replayed.outputs, replayed.dead_letters
    )
    assert not diff.changed, diff.report(new_label="agent")
    assert len(production.requests) == 2  # only when recorded


async def test_an_input_without_a_recorded_answer_fails_as_an_outage() -> None:
    production = ScriptedProvider(call("current_time"), Completion(text="It is noon."))
    events = await record(production)
    settings = Settings(metrics_port=0, llm={"provider": "recorded"})
    service = agent(None, settings)
    recording = select("c1", events, service)
    replayed = await run_in_memory(service, recording.inputs, answers=RecordedAnswers())
    assert [e["text"] for e in replayed.outputs if e.type == "response_ready"] == [LLM_DOWN]


async def test_the_provider_serves_replays_only() -> None:
    provider = RecordedProvider()
    request = ChatRequest(messages=())
    try:
        await provider.complete(request)
    except LLMError as exc:
        assert "replays only" in str(exc)
    else:
        raise AssertionError("answered outside a replay")
    token = TAPE.set(RecordedAnswers({"e1": Completion(text="hi")}, current="e1"))
    try:
        assert (await provider.complete(request)).text == "hi"
    finally:
        TAPE.reset(token)
