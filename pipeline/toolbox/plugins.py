"""User tools from installed packages, through the entry-point group ``pipeline.tools``.

A package declares its tools in its ``pyproject.toml``::

    [project.entry-points."pipeline.tools"]
    weather = "my_tools.weather:weather"

The named object is a :class:`~pipeline.toolbox.Tool` (for example made with
``@tool``), or a callable with no arguments returning a Tool or a list of Tools.

Installing a package is not enough: an entry point is loaded (its code imported and
run) only when the operator lists its name in ``PIPELINE_TOOLS__PLUGINS`` (or says
``all``), so a package that brings an entry point along cannot slip a tool in front of
the model. Each loaded tool's ``source`` is ``plugin:<entry point name>``.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable, Sequence
from importlib.metadata import EntryPoint, entry_points
from typing import Literal

from pipeline.errors import ConfigError
from pipeline.toolbox.registry import Tool

ENTRY_POINT_GROUP = "pipeline.tools"
ALL = "all"

log = logging.getLogger(__name__)


def discover_tools(
    group: str = ENTRY_POINT_GROUP, *, allowed: Sequence[str] | Literal["all"] = ALL
) -> list[Tool]:
    """Tools from the installed entry points of ``group`` that ``allowed`` names.

    ``allowed`` is a list of entry-point names or ``"all"``; a listed name that is not
    installed is a ConfigError (a typo would otherwise silently offer nothing).
    """
    points = list(entry_points(group=group))
    if allowed == ALL:
        return load_entry_points(points)
    installed = {p.name for p in points}
    missing = sorted(set(allowed) - installed)
    if missing:
        raise ConfigError(
            f"tool plugins {missing} are allowed but not installed in group {group!r}; "
            f"installed: {sorted(installed) or 'none'}"
        )
    skipped = sorted(installed - set(allowed))
    if skipped:
        log.info("tool plugins not loaded (not in PIPELINE_TOOLS__PLUGINS): %s", ", ".join(skipped))
    return load_entry_points(p for p in points if p.name in set(allowed))


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
        tools.extend(dataclasses.replace(t, source=f"plugin:{point.name}") for t in found)
    return tools
