"""User tools from installed packages, through the entry-point group ``pipeline.tools``.

A package declares its tools in its ``pyproject.toml``::

    [project.entry-points."pipeline.tools"]
    weather = "my_tools.weather:weather"

The named object is a :class:`~pipeline.toolbox.Tool` (for example made with
``@tool``), or a callable with no arguments returning a Tool or a list of Tools. Only
installed packages are loaded: the operator chooses the code, no tool runs text it got.
"""

from __future__ import annotations

from collections.abc import Iterable
from importlib.metadata import EntryPoint, entry_points

from pipeline.errors import ConfigError
from pipeline.toolbox.registry import Tool

ENTRY_POINT_GROUP = "pipeline.tools"


def discover_tools(group: str = ENTRY_POINT_GROUP) -> list[Tool]:
    """Tools from every installed entry point of ``group``."""
    return load_entry_points(entry_points(group=group))


def load_entry_points(points: Iterable[EntryPoint]) -> list[Tool]:
    """Load each entry point into tools; a broken one is a ConfigError naming it."""
    tools: list[Tool] = []
    for point in points:
        where = f"entry point {point.name!r} ({point.value}) in group {point.group!r}"
        try:
            obj = point.load()
        except Exception as exc:
            raise ConfigError(f"cannot load the {where}: {exc!r}") from exc
        if not isinstance(obj, Tool) and callable(obj):
            try:
                obj = obj()
            except Exception as exc:
                raise ConfigError(f"the factory of the {where} failed: {exc!r}") from exc
        found = [obj] if isinstance(obj, Tool) else obj
        if not isinstance(found, list | tuple) or not all(isinstance(t, Tool) for t in found):
            raise ConfigError(
                f"the {where} must name a pipeline.toolbox.Tool or a factory returning "
                f"Tools, not {type(obj).__name__}"
            )
        tools.extend(found)
    return tools
