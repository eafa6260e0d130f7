"""Tools the agent can call: the registry, the built-ins and user tools from entry points;
what a turn is offered (:mod:`~pipeline.toolbox.tool_offer`) and which calls wait for an
operator's approval (:mod:`~pipeline.toolbox.approvals`).

A tool is a named function of a JSON object returning something JSON can encode::

    from pipeline.toolbox import ToolError, tool

    @tool("weather", "Today's weather for a city.", {"city": {"type": "string"}})
    async def weather(args):
        if args["city"] not in FORECASTS:
            raise ToolError(f"no forecast for {args['city']}")
        return {"forecast": FORECASTS[args["city"]]}

Packages offer tools to the tools service through the entry-point group
``pipeline.tools`` (see :mod:`pipeline.toolbox.plugins`).
"""

from __future__ import annotations

from pipeline.errors import CalculatorError, ToolError
from pipeline.toolbox.assembly import build_registry
from pipeline.toolbox.builtins import builtin_tools
from pipeline.toolbox.calculator import evaluate
from pipeline.toolbox.plugins import ENTRY_POINT_GROUP, discover_tools, load_entry_points
from pipeline.toolbox.registry import Tool, ToolRegistry, tool

__all__ = [
    "ENTRY_POINT_GROUP",
    "CalculatorError",
    "Tool",
    "ToolError",
    "ToolRegistry",
    "build_registry",
    "builtin_tools",
    "discover_tools",
    "evaluate",
    "load_entry_points",
    "tool",
]
