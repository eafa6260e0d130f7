"""The agent's version label: every event the agent emits carries it."""

from __future__ import annotations

from pipeline.config import Settings
from pipeline.config.sections import package_version
from pipeline.llm import Completion
from tests.unit.services.agent.agent_support import ScriptedProvider, call, running_agent

EMITTED = ("tool_called", "response_ready", "timer_requested", "handoff_requested")


async def test_every_event_the_agent_emits_carries_its_version_label() -> None:
    provider = ScriptedProvider(
        call("calculator", expression="1+1"),
        Completion(text="2"),
        call("current_time"),  # needs an approval
    )
    async with running_agent(
        provider,
        version="canary-7",
        follow_up_seconds=600,
        approval_tools={"*": ["current_time"]},
    ) as run:
        called = await run.user("what is 1+1?")
        [tool_call] = run.outputs("tool_called")
        await run.send(
            "tool_result",
            {
                "call_id": tool_call["call_id"],
                "tool": "calculator",
                "status": "ok",
                "result_json": '{"value": 2}',
                "error": None,
                "duration_ms": 1,
            },
        )
        await run.user("what time is it?")
        await run.user("I want to talk to a human")
        await run.send("operator_message", {"operator_id": "op-ada", "text": "Here I am."})
        outputs = {t: run.outputs(t) for t in (*EMITTED, "approval_requested")}
    assert called.type == "message_received"
    for event_type, events in outputs.items():
        assert events, f"the scenario emits a {event_type}"
        assert {e.agent_version for e in events} == {"canary-7"}, event_type
    operator = [e for e in outputs["response_ready"] if e["text"] == "Here I am."]
    assert [e.agent_version for e in operator] == ["canary-7"]


async def test_the_label_is_the_package_version_unless_set() -> None:
    assert Settings().agent.version_label() == package_version() != ""
    async with running_agent(ScriptedProvider(Completion(text="hi"))) as run:
        await run.user("hello")
        [answer] = run.outputs("response_ready")
    assert answer.agent_version == package_version()
