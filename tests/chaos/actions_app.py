"""The tools service the actions chaos runs kill: refund tools whose executions are counted.

``pipeline run tests.chaos.actions_app:build_tools`` (from the checkout's root, which
``pipeline run`` puts first on ``sys.path``) runs the ``tools`` service with two tools of
its own beside the built-ins, and whatever MCP servers ``PIPELINE_TOOLS__MCP_SERVERS``
names (the harness adds :mod:`tests.chaos.mcp_refund_server`):

- ``refund_keyed``, declared ``keyed``: refunds once per idempotency key, as a payment API
  does; a second execution with a key that took effect is logged as deduplicated;
- ``refund_once``, declared ``at_most_once``: every execution takes effect.

Each execution is one line of the ledger named by ``CHAOS_TOOL_LEDGER``
(:mod:`tests.chaos.side_effects`), after ``CHAOS_TOOL_LATENCY_SECONDS`` of work.

The tools adapt to the installed ``pipeline``: a tool receives a ``ToolContext`` (call id,
idempotency key, attempt) as a second parameter ``context`` only once
``pipeline.toolbox`` offers ``ToolContext``, and a ``Tool`` takes ``guarantee=`` only once it
has that field. Before that a tool gets its arguments alone, so it knows no key and every
execution of the keyed tool takes effect.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import pipeline.toolbox
from pipeline.config import Settings
from pipeline.runtime.service import Service
from pipeline.services import tools as tools_service
from pipeline.toolbox import Tool, build_registry
from tests.chaos.side_effects import (
    latency_from_environment,
    ledger_from_environment,
    record_execution,
)

KEYED = "refund_keyed"
AT_MOST_ONCE = "refund_once"
MCP_TOOL = "refund_mcp"
# The guarantee each refund tool declares (the MCP tool's key arrives in the call's _meta).
GUARANTEES = {KEYED: "keyed", AT_MOST_ONCE: "at_most_once", MCP_TOOL: "keyed"}
REFUND_TOOLS = tuple(GUARANTEES)
PARAMETERS: Mapping[str, Any] = {
    "type": "object",
    "properties": {
        "order_id": {"type": "string", "description": "The order to refund."},
        "conversation": {"type": "string", "description": "The conversation asking."},
        "amount_cents": {"type": "integer", "description": "How much to refund."},
    },
    "required": ["amount_cents", "conversation", "order_id"],
}

CONTEXT_OFFERED = hasattr(pipeline.toolbox, "ToolContext")
GUARANTEE_DECLARABLE = "guarantee" in inspect.signature(Tool).parameters


def refund_tools(ledger: Path, latency: float) -> list[Tool]:
    """The two code-registered refund tools, writing to ``ledger``."""
    return [
        _tool(KEYED, "Refund an order (once per idempotency key).", ledger, latency, True),
        _tool(AT_MOST_ONCE, "Refund an order (must never run twice).", ledger, latency, False),
    ]


def build_tools(settings: Settings) -> Service:
    """The ``tools`` service with the built-ins and the refund tools (no plugins)."""
    extra = refund_tools(ledger_from_environment(), latency_from_environment())
    registry = build_registry(settings.tools, extra=extra, entry_points=False)
    return tools_service.build(settings, registry=registry)


def _tool(name: str, description: str, ledger: Path, latency: float, keyed: bool) -> Tool:
    async def execute(arguments: Mapping[str, Any], context: Any) -> dict[str, Any]:
        await asyncio.sleep(latency)  # the provider's work, before the effect is final
        await asyncio.to_thread(
            record_execution,
            ledger,
            name,
            arguments,
            call_id=getattr(context, "call_id", None),
            key=getattr(context, "idempotency_key", None),
            attempt=getattr(context, "attempt", None),
            deduplicate=keyed,
        )
        # A deduplicated request answers as the first did, as payment APIs do.
        return {"refunded": str(arguments.get("order_id")), "status": "done"}

    fn: Callable[..., Awaitable[dict[str, Any]]]
    if CONTEXT_OFFERED:

        async def with_context(arguments: Mapping[str, Any], context: Any) -> dict[str, Any]:
            return await execute(arguments, context)

        fn = with_context
    else:

        async def arguments_only(arguments: Mapping[str, Any]) -> dict[str, Any]:
            return await execute(arguments, None)

        fn = arguments_only
    declared: dict[str, Any] = {"guarantee": GUARANTEES[name]} if GUARANTEE_DECLARABLE else {}
    return Tool(name, description, fn, PARAMETERS, **declared)
