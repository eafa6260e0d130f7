"""The tools service's seam: the runner passes the call's context on, and an outcome is
the tool_result of its call."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pipeline.config import bundled_dir
from pipeline.events.catalog import SchemaCatalog
from pipeline.events.serde import SingleObjectSerde
from pipeline.services.tools import ToolOutcome, ToolRunner
from pipeline.tool_context import ToolContext
from pipeline.toolbox import Tool, ToolRegistry

CONTEXT = ToolContext("call-1", "3f2c9a1e-key", "refund", "web:acme:ada", "acme")


async def refund(args: Mapping[str, Any], context: ToolContext) -> dict[str, Any]:
    return {"order": args["order"], "key": context.idempotency_key, "call": context.call_id}


async def echo(args: Mapping[str, Any]) -> dict[str, Any]:
    return dict(args)


def runner() -> ToolRunner:
    registry = ToolRegistry([Tool("refund", "Refund.", refund), Tool("echo", "Echo.", echo)])
    return ToolRunner(registry, max_concurrency=2, default_timeout=5, max_timeout=10)


async def test_the_runner_hands_the_calls_context_to_a_tool_that_asks_for_it() -> None:
    run = runner()
    assert await run.run("refund", '{"order": "A-1"}', 1000, CONTEXT) == (
        "ok",
        {"order": "A-1", "key": "3f2c9a1e-key", "call": "call-1"},
        None,
    )
    assert await run.run("echo", '{"x": 1}', 1000, CONTEXT) == ("ok", {"x": 1}, None)


def test_an_outcome_is_the_tool_result_of_its_call() -> None:
    outcome = ToolOutcome("ok", '{"refund": "R-1"}', None, 42)
    fields = outcome.tool_result(CONTEXT)
    assert fields == {
        "call_id": "call-1",
        "tool": "refund",
        "status": "ok",
        "result_json": '{"refund": "R-1"}',
        "error": None,
        "duration_ms": 42,
    }
    serde = SingleObjectSerde(SchemaCatalog.load(bundled_dir("schemas")))
    serde.validate("tool_result", {**fields, "metadata": METADATA})  # raises if it does not fit


METADATA = {
    "event_id": "5c1f7a0e-2b3d-4c5e-8f90-a1b2c3d4e5f6",
    "event_type": "tool_result",
    "conversation_id": "web:acme:ada",
    "tenant_id": "acme",
    "correlation_id": "5c1f7a0e-2b3d-4c5e-8f90-a1b2c3d4e5f6",
    "causation_id": None,
    "occurred_at": 1_700_000_000_000,
    "producer": "tools",
}
