"""The registry a tools service runs, assembled from its settings: the built-ins, the
user tools from entry points that the settings allow, the HTTP tools of the settings, and
any extra tools."""

from __future__ import annotations

from collections.abc import Iterable

from pipeline.config.sections import ToolsSettings
from pipeline.toolbox.builtins import builtin_tools
from pipeline.toolbox.http_tool import http_tools
from pipeline.toolbox.plugins import discover_tools
from pipeline.toolbox.registry import Tool, ToolRegistry


def build_registry(
    settings: ToolsSettings, *, extra: Iterable[Tool] = (), entry_points: bool = True
) -> ToolRegistry:
    """Built-ins, then the user tools from the ``pipeline.tools`` entry points that
    ``settings.plugins`` allows (none by default), then ``settings.http_tools``, then
    ``extra``; narrowed to ``settings.enabled`` when that is set. ``entry_points=False``
    loads no plugin at all."""
    registry = ToolRegistry(builtin_tools(settings))
    if entry_points:
        for t in discover_tools(allowed=settings.plugins):
            registry.register(t)
    for t in [*http_tools(settings), *extra]:
        registry.register(t)
    if settings.enabled is not None:
        registry = registry.only(settings.enabled, allow_unknown=bool(settings.mcp_servers))
    return registry
