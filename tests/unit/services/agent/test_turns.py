"""A turn's next step: the tool loop's depth limit, and parallel tool calls."""

from __future__ import annotations

from pipeline.llm import Completion
from pipeline.services.agent.turns import TOO_DEEP
from tests.unit.services.agent.agent_support import ScriptedProvider, calls
from tests.unit.services.agent.handler_support import (
    Harness,
    message,
    tool_result,
)


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
