"""Replaying in memory, without a broker: a conversation recorded from the agent run by
``pipeline.testing`` goes through the same agent (no difference) and a changed one (the
reply differs); state restored from a seeded changelog; inputs picked per service."""

from __future__ import annotations

import json
from datetime import timedelta

from pipeline.config import Settings
from pipeline.events.model import Event, Metadata
from pipeline.replay import compare, run_in_memory, select
from pipeline.runtime.context import Context
from pipeline.runtime.service import Service
from pipeline.services.agent import build
from pipeline.testing import TestService
from pipeline.toolbox import builtin_tools
from pipeline.toolbox.tool_offer import StaticOffer
from tests.replay_agents import shouting
from tests.unit.runtime_events import chat

SETTINGS = Settings(metrics_port=0)
OFFER = StaticOffer.of(builtin_tools(SETTINGS.tools))


def agent() -> Service:
    return build(SETTINGS, tools=OFFER)


async def record() -> tuple[list[Event], list[tuple[str, str, bytes]]]:
    """A greeting and a calculator turn as the running pipeline records them, and the
    changelog records."""
    async with TestService(agent()) as svc:
        hello = await svc.send("message_received", chat("hello"), conversation_id="c1")
        greeting = await svc.next_output("response_ready")
        question = await svc.send("message_received", chat("what is 12*7?"), conversation_id="c1")
        called = await svc.next_output("tool_called")
        # A second later, as a tool takes time: the moment a replay --from may start at.
        later = called.metadata.occurred_at + timedelta(seconds=1)
        result = Event(
            Metadata.new(
                "tool_result",
                "c1",
                tenant_id="tenant-1",
                producer="tools",
                cause=called.metadata,
                occurred_at=later,
            ),
            {
                "call_id": called["call_id"],
                "tool": "calculator",
                "status": "ok",
                "result_json": json.dumps({"value": 84}),
                "error": None,
                "duration_ms": 1,
            },
        )
        await svc.send_event(result)
        answer = await svc.next_output("response_ready")
        changelog = svc.settings.topic(SETTINGS.agent.changelog_topic)
        state = [
            (SETTINGS.agent.changelog_topic, "c1", r.value() or b"")
            for r in svc.broker.records(changelog)
        ]
    assert (greeting["text"], answer["text"]) == ("Hello! How can I help you today?", "12*7 = 84")
    return [hello, greeting, question, called, result, answer], state


async def test_the_same_agent_replays_with_no_difference() -> None:
    events, _ = await record()
    service = agent()
    recording = select("c1", events, service)
    assert [e.type for e in recording.inputs] == [
        "message_received",
        "message_received",
        "tool_result",
    ]
    assert [e.type for e in recording.outputs] == [
        "response_ready",
        "tool_called",
        "response_ready",
    ]
    replayed = await run_in_memory(service, recording.inputs)
    # Same inputs, same handler: the same event ids, derived from the same causes.
    assert {e.id for e in replayed.outputs} == {e.id for e in recording.outputs}
    diff = compare("c1", recording.inputs, recording.outputs, replayed.outputs)
    assert not diff.changed, diff.report()


async def test_a_changed_agent_shows_the_changed_reply() -> None:
    events, _ = await record()
    service = shouting(SETTINGS, tools=OFFER)
    recording = select("c1", events, service)
    replayed = await run_in_memory(service, recording.inputs)
    diff = compare("c1", recording.inputs, recording.outputs, replayed.outputs)
    assert diff.changed
    [changed] = diff.changes()  # the calculator's answer has no letters to shout
    assert changed.input["text"] == "hello"
    assert changed.kinds() == ["response_ready.text"]
    assert '-  text: "Hello! How can I help you today?"' in changed.unified()
    assert '+  text: "HELLO! HOW CAN I HELP YOU TODAY?"' in changed.unified()


async def test_a_replay_from_a_moment_starts_on_the_seeded_state() -> None:
    events, state = await record()
    service = agent()
    since = events[4].metadata.occurred_at  # the tool result: the turn is half done
    recording = select("c1", events, service, since)
    assert [e.type for e in recording.inputs] == ["tool_result"]
    first_turn = state[:2]  # what the changelog said after the question
    seeded = await run_in_memory(service, recording.inputs, state=first_turn)
    assert [e["text"] for e in seeded.outputs] == ["12*7 = 84"]
    # Without the state the result answers no pending call: the reply is missing.
    unseeded = await run_in_memory(agent(), recording.inputs)
    diff = compare("c1", recording.inputs, recording.outputs, unseeded.outputs)
    assert diff.inputs[0].kinds() == ["-response_ready"]


async def test_a_service_s_own_events_are_not_its_inputs() -> None:
    events, _ = await record()
    tool_service = Service("tools", settings=SETTINGS)

    @tool_service.handler("tool_called")
    async def run_tool(event: Event, ctx: Context) -> None:
        raise AssertionError("not run: select only reads")

    recording = select("c1", events, tool_service)
    assert [e.type for e in recording.inputs] == ["tool_called"]
    assert [e.type for e in recording.outputs] == ["tool_result"]
