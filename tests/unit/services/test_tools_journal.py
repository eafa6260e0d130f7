"""The tools service's journal of calls, through the real runtime in memory: a recorded
call is answered from the record; a keyed call with an intent and no outcome runs again
with the same key; an at-most-once one is not run again but answered "outcome unknown",
and an operator's decision answers it from then on."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from pipeline.events.model import Event, Metadata
from pipeline.journal import Journal
from pipeline.runtime.context import Context
from pipeline.runtime.service import Service
from pipeline.services.tools import CallJournal, ToolOutcome
from pipeline.testing import MemoryBroker, TestService
from pipeline.tool_context import ToolContext
from pipeline.toolbox.guarantee import AT_MOST_ONCE, KEYED

JOURNAL = "tools_journal"


class Tool:
    """A refund that counts its executions; ``block`` keeps it from finishing."""

    def __init__(self) -> None:
        self.runs: list[tuple[str, int]] = []
        self.block: asyncio.Event | None = None

    async def __call__(self, event: Event, call: ToolContext) -> ToolOutcome:
        self.runs.append((call.idempotency_key, call.attempt))
        if self.block is not None:
            await self.block.wait()
        return ToolOutcome("ok", json.dumps({"refunded": event["arguments_json"]}), None, 1)


def tools_service(tool: Tool, guarantee: str) -> Service:
    service = Service("tools", emits=["tool_result"], assignment_strategy="range")
    calls = CallJournal(Journal(service, JOURNAL, expire_committed=False))

    @service.handler("tool_called")
    async def run_tool(event: Event, ctx: Context) -> None:
        outcome, call = await calls.run(event, ctx, guarantee, lambda c: tool(event, c))
        ctx.emit("tool_result", outcome.tool_result(call))

    @service.handler("tool_outcome_decided")
    async def decided(event: Event, ctx: Context) -> None:
        await calls.decided(event, ctx)

    return service


def tool_called(call_id: str = "call-1") -> Event:
    metadata = Metadata.new("tool_called", "c1", tenant_id="t1", producer="agent")
    return Event(
        metadata,
        {
            "call_id": call_id,
            "tool": "refund",
            "arguments_json": '{"order": "A-1"}',
            "timeout_ms": 1000,
            "depth": 0,
        },
    )


def results(svc: TestService) -> list[dict[str, Any]]:
    return [
        {k: e[k] for k in ("call_id", "status", "result_json", "error")}
        for e in svc.outputs("tool_result")
    ]


async def interrupted(tool: Tool, guarantee: str, called: Event) -> MemoryBroker:
    """A run whose tool never finishes: stopped with its intent recorded, no outcome."""
    tool.block = asyncio.Event()
    async with TestService(tools_service(tool, guarantee), drain_timeout_seconds=0.1) as svc:
        await svc.send_event(called)
        await svc.until(lambda: tool.runs != [], "the tool to start")
    tool.block = None
    return svc.broker


async def test_a_recorded_call_handled_again_is_answered_from_the_record() -> None:
    tool, called = Tool(), tool_called()
    async with TestService(tools_service(tool, KEYED)) as svc:
        await svc.send_event(called)
        await svc.settle()
    svc.broker.offsets.clear()  # as if it had died before committing
    async with TestService(tools_service(tool, KEYED), broker=svc.broker) as again:
        await again.settle()
        assert [r["status"] for r in results(again)] == ["ok", "ok"]
    assert tool.runs == [(str(called.id), 1)]


async def test_a_keyed_call_without_an_outcome_runs_again_with_the_same_key() -> None:
    tool, called = Tool(), tool_called()
    broker = await interrupted(tool, KEYED, called)
    async with TestService(tools_service(tool, KEYED), broker=broker) as svc:
        await svc.settle()
        assert [r["status"] for r in results(svc)] == ["ok"]
    assert tool.runs == [(str(called.id), 1), (str(called.id), 2)]


async def test_an_at_most_once_call_without_an_outcome_is_unknown_until_an_operator_decides() -> (
    None
):
    tool, called = Tool(), tool_called()
    broker = await interrupted(tool, AT_MOST_ONCE, called)
    async with TestService(tools_service(tool, AT_MOST_ONCE), broker=broker) as svc:
        await svc.settle()
        (unknown,) = results(svc)
        assert unknown["status"] == "unknown"
        assert unknown["error"].startswith("outcome unknown: refund was started (attempt 1)")
        decision = Event(
            Metadata.new("tool_outcome_decided", "c1", tenant_id="t1", producer="console"),
            {
                "call_id": "call-1",
                "tool": "refund",
                "outcome": "done",
                "operator_id": "mallory",
                "result_json": '{"refund": "R-9"}',
                "note": "the refund went through",
            },
        )
        await svc.send_event(decision)
        await svc.settle()
        # The same call arriving again (an at-least-once agent wrote it twice): answered
        # with the operator's decision, still not run.
        await svc.send_event(called)
        await svc.settle()
        assert results(svc)[-1] == {
            "call_id": "call-1",
            "status": "ok",
            "result_json": '{"refund": "R-9"}',
            "error": None,
        }
    assert tool.runs == [(str(called.id), 1)]  # run once, never again
