"""The tools service on a real broker: tool_called -> tool_result, whatever the tool does."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping
from typing import Any

from pipeline.config.sections import ToolsSettings
from pipeline.events.model import Event, Metadata
from pipeline.services import tools
from pipeline.toolbox import Tool, ToolContext, build_registry
from tests.integration.runtime_support import produce_events, read_all_async, running, settings_for


def call(conversation: str, tool: str, arguments: Mapping[str, Any], timeout_ms: int) -> Event:
    metadata = Metadata.new("tool_called", conversation, tenant_id="t1", producer="agent")
    data = {
        "call_id": f"call-{conversation}",
        "tool": tool,
        "arguments_json": json.dumps(arguments),
        "timeout_ms": timeout_ms,
        "depth": 0,
    }
    return Event(metadata, data)


async def test_calculator_timeout_and_unknown_tool(
    kafka_bootstrap: str, topic_prefix: str, make_topics: Callable[..., list[str]]
) -> None:
    calls, results, *_ = make_topics(
        "tool_called", "tool_result", "dead_letters", "tool_catalog", "tools_journal", partitions=2
    )

    async def sleepy(args: Mapping[str, Any]) -> None:
        await asyncio.sleep(5)

    settings = settings_for(kafka_bootstrap, topic_prefix)
    registry = build_registry(
        ToolsSettings(), extra=[Tool("sleepy", "Sleeps.", sleepy)], entry_points=False
    )
    service = tools.build(settings, registry=registry)
    metrics = service.registry
    sent = produce_events(
        kafka_bootstrap,
        calls,
        [
            call("calc", "calculator", {"expression": "12*7"}, 5000),
            call("slow", "sleepy", {}, 200),
            call("nope", "teleport", {"to": "mars"}, 5000),
            call("evil", "calculator", {"expression": "__import__('os').getcwd()"}, 5000),
        ],
    )
    async with running(service):
        records = await read_all_async(kafka_bootstrap, results, lambda r: len(r) >= 4, 60)

    by_call = {r.event()["call_id"]: r.event() for r in records}
    assert len(records) == 4
    calc = by_call["call-calc"]
    assert (calc["status"], json.loads(calc["result_json"]), calc["error"]) == (
        "ok",
        {"value": 84},
        None,
    )
    slow = by_call["call-slow"]
    assert slow["status"] == "timeout" and 150 <= slow["duration_ms"] < 2000
    assert "within 0.2s" in slow["error"]
    nope = by_call["call-nope"]
    assert nope["status"] == "error" and "unknown tool 'teleport'" in nope["error"]
    evil = by_call["call-evil"]
    assert evil["status"] == "error" and "function calls are not allowed" in evil["error"]
    for sent_event in sent:
        result = by_call[sent_event["call_id"]]
        assert result.metadata.causation_id == sent_event.id
        assert result.metadata.correlation_id == sent_event.metadata.correlation_id
        assert result.conversation_id == sent_event.conversation_id
        assert result["tool"] == sent_event["tool"]

    def sample(name: str, **labels: str) -> float | None:
        return metrics.get_sample_value(name, {"service": "tools", **labels})

    assert sample("pipeline_tool_calls_total", tool="calculator", status="ok") == 1
    assert sample("pipeline_tool_calls_total", tool="calculator", status="error") == 1
    assert sample("pipeline_tool_calls_total", tool="sleepy", status="timeout") == 1
    assert sample("pipeline_tool_calls_total", tool="unknown", status="error") == 1
    assert sample("pipeline_tool_duration_seconds_count", tool="calculator") == 2


async def test_a_tool_receives_its_calls_context_built_from_the_event(
    kafka_bootstrap: str, topic_prefix: str, make_topics: Callable[..., list[str]]
) -> None:
    calls, results, *_ = make_topics(
        "tool_called", "tool_result", "dead_letters", "tool_catalog", "tools_journal", partitions=2
    )
    seen: list[ToolContext] = []

    async def refund(args: Mapping[str, Any], context: ToolContext) -> dict[str, str]:
        seen.append(context)
        return {"refund": f"R-{args['order']}", "key": context.idempotency_key}

    registry = build_registry(
        ToolsSettings(), extra=[Tool("refund", "Refund.", refund)], entry_points=False
    )
    service = tools.build(settings_for(kafka_bootstrap, topic_prefix), registry=registry)
    (sent,) = produce_events(kafka_bootstrap, calls, [call("ada", "refund", {"order": 7}, 5000)])
    async with running(service):
        (record,) = await read_all_async(kafka_bootstrap, results, lambda r: len(r) >= 1, 60)

    assert seen == [
        ToolContext(
            call_id="call-ada",
            idempotency_key=str(sent.id),
            tool="refund",
            conversation_id="ada",
            tenant_id="t1",
            attempt=1,
        )
    ]
    result = record.event()
    assert (result["call_id"], result["status"]) == ("call-ada", "ok")
    assert json.loads(result["result_json"]) == {"refund": "R-7", "key": str(sent.id)}
