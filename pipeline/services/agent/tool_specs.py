"""What the agent tells the model about the tools service's built-in tools."""

from __future__ import annotations

from collections.abc import Iterable

from pipeline.llm.base import ToolSpec

BUILT_IN_TOOLS = (
    ToolSpec(
        "calculator",
        "Evaluate an arithmetic expression exactly, e.g. '12*7' or '(3+4)/2'.",
        {
            "type": "object",
            "properties": {
                "expression": {"type": "string", "description": "The expression to evaluate."}
            },
            "required": ["expression"],
            "additionalProperties": False,
        },
    ),
    ToolSpec(
        "current_time",
        "The current date and time (UTC, ISO 8601).",
        {"type": "object", "properties": {}, "additionalProperties": False},
    ),
    ToolSpec(
        "knowledge_lookup",
        "Look up an answer in the support knowledge base.",
        {
            "type": "object",
            "properties": {"query": {"type": "string", "description": "What to look up."}},
            "required": ["query"],
            "additionalProperties": False,
        },
    ),
)


def offered_tools(enabled: Iterable[str] | None) -> tuple[ToolSpec, ...]:
    """The built-ins, restricted to ``enabled`` when the tools service restricts them."""
    if enabled is None:
        return BUILT_IN_TOOLS
    wanted = set(enabled)
    return tuple(t for t in BUILT_IN_TOOLS if t.name in wanted)
