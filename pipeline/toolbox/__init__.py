"""Tools the agent can call: the registry, the built-ins and user tools from entry points;
what a turn is offered (:mod:`~pipeline.toolbox.tool_offer`) and which calls wait for an
operator's approval (:mod:`~pipeline.toolbox.approvals`).

A tool is a named function of a JSON object returning something JSON can encode::

    from pipeline.toolbox import ToolError, tool

    @tool("weather", "Today's weather for a city.", {"city": {"type": "string"}},
          guarantee="idempotent")
    async def weather(args):
        if args["city"] not in FORECASTS:
            raise ToolError(f"no forecast for {args['city']}")
        return {"forecast": FORECASTS[args["city"]]}

Every tool declares its guarantee, what running it again for one call does
(:mod:`~pipeline.toolbox.guarantee`; ``keyed`` unless said). A tool that changes
something asks for the call's :class:`ToolContext` as a second parameter and keys its
side effect on ``context.idempotency_key`` (:mod:`~pipeline.tool_context`).
:func:`http_tool` makes a tool of an HTTP endpoint.

Packages offer tools to the tools service through the entry-point group
``pipeline.tools`` (see :mod:`pipeline.toolbox.plugins`).
"""

from __future__ import annotations

from pipeline.errors import CalculatorError, ToolError
from pipeline.tool_context import ToolContext, idempotency_key
from pipeline.toolbox.assembly import build_registry
from pipeline.toolbox.builtins import builtin_tools
from pipeline.toolbox.calculator import evaluate
from pipeline.toolbox.guarantee import AT_MOST_ONCE, GUARANTEES, IDEMPOTENT, KEYED, Guarantee
from pipeline.toolbox.http_tool import http_tool
from pipeline.toolbox.plugins import ENTRY_POINT_GROUP, discover_tools, load_entry_points
from pipeline.toolbox.registry import Tool, ToolRegistry, tool

__all__ = [
    "AT_MOST_ONCE",
    "ENTRY_POINT_GROUP",
    "GUARANTEES",
    "IDEMPOTENT",
    "KEYED",
    "CalculatorError",
    "Guarantee",
    "Tool",
    "ToolContext",
    "ToolError",
    "ToolRegistry",
    "build_registry",
    "builtin_tools",
    "discover_tools",
    "evaluate",
    "http_tool",
    "idempotency_key",
    "load_entry_points",
    "tool",
]
