"""The built-in tools: calculator, current_time and knowledge_lookup, all read-only, so
``idempotent``."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pipeline.config.sections import ToolsSettings
from pipeline.errors import ToolError
from pipeline.toolbox.calculator import evaluate
from pipeline.toolbox.guarantee import IDEMPOTENT
from pipeline.toolbox.knowledge import KnowledgeBase
from pipeline.toolbox.registry import Tool

BUILTIN = "builtin"


async def calculator(args: Mapping[str, Any]) -> dict[str, Any]:
    """``{"expression": "12*7"}`` -> ``{"value": 84}``."""
    return {"value": evaluate(_string(args, "expression"))}


async def current_time(args: Mapping[str, Any]) -> dict[str, Any]:
    """``{}`` or ``{"timezone": "Europe/Paris"}`` -> ``{"iso": ..., "timezone": ...}``."""
    name = args.get("timezone") or "UTC"
    if not isinstance(name, str):
        raise ToolError("'timezone' must be an IANA time zone name such as Europe/Paris")
    try:
        zone = UTC if name.upper() == "UTC" else ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ToolError(
            f"unknown time zone {name!r}; use an IANA name such as Europe/Paris"
        ) from None
    now = datetime.now(zone)
    return {"iso": now.isoformat(timespec="seconds"), "timezone": name}


def knowledge_lookup(knowledge: KnowledgeBase | None) -> Tool:
    async def lookup(args: Mapping[str, Any]) -> dict[str, Any]:
        query = _string(args, "query")
        if knowledge is None:
            raise ToolError("no knowledge base is configured (set PIPELINE_TOOLS__KNOWLEDGE_FILE)")
        entry = knowledge.lookup(query)
        if entry is None:
            raise ToolError(f"nothing in the knowledge base matches {query!r}")
        return {"answer": entry.answer, "entry": entry.id}

    return Tool(
        "knowledge_lookup",
        "Look up an answer in the local knowledge base (opening hours, policies, ...).",
        lookup,
        {
            "type": "object",
            "properties": {"query": {"type": "string", "description": "The question."}},
            "required": ["query"],
        },
        source=BUILTIN,
        guarantee=IDEMPOTENT,
    )


def builtin_tools(settings: ToolsSettings) -> list[Tool]:
    """The built-ins; the knowledge file is read now, so a bad one fails at start."""
    knowledge = KnowledgeBase.load(settings.knowledge_file) if settings.knowledge_file else None
    return [
        Tool(
            "calculator",
            "Evaluate an arithmetic expression: numbers, + - * / // % ** and parentheses.",
            calculator,
            {
                "type": "object",
                "properties": {
                    "expression": {"type": "string", "description": "For example 12*7."}
                },
                "required": ["expression"],
            },
            source=BUILTIN,
            guarantee=IDEMPOTENT,
        ),
        Tool(
            "current_time",
            "The current date and time, in UTC or a given IANA time zone.",
            current_time,
            {
                "type": "object",
                "properties": {
                    "timezone": {"type": "string", "description": "For example Europe/Paris."}
                },
            },
            source=BUILTIN,
            guarantee=IDEMPOTENT,
        ),
        knowledge_lookup(knowledge),
    ]


def _string(args: Mapping[str, Any], name: str) -> str:
    value = args.get(name)
    if not isinstance(value, str) or not value.strip():
        raise ToolError(f"the argument {name!r} must be a non-empty string")
    return value
