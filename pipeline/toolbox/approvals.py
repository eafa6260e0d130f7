"""Tool calls that wait for an operator: which ones, their ids, and edited arguments.

A call of a tool listed in ``PIPELINE_AGENT__APPROVAL_TOOLS`` for the conversation's
tenant (or for ``*``) becomes ``approval_requested`` instead of ``tool_called``, with an
expiry timer through the scheduler. The approval's id is derived from the event that
asked and the call's id, so a repeat of that event after a crash asks for the same
approval. Arguments an operator edits must be a JSON object the tool's JSON Schema (as
the tool catalog advertises it) accepts; anything else is refused with the reason.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from typing import Any

import jsonschema

from pipeline.config.sections import AgentSettings
from pipeline.errors import RejectEvent
from pipeline.llm.base import ToolSpec

EXPIRY = "approval_expiry"


def needs_approval(config: AgentSettings, tenant: str | None, tool: str) -> bool:
    listed = config.approval_tools
    return tool in listed.get("*", ()) or (tenant is not None and tool in listed.get(tenant, ()))


def approval_id(event_id: uuid.UUID, call_id: str) -> str:
    return "approval_" + uuid.uuid5(event_id, f"approval/{call_id}").hex[:24]


def timer_id(approval: str) -> str:
    return f"{EXPIRY}:{approval}"


def edited_arguments(raw: str, tool: str, offered: Sequence[ToolSpec]) -> dict[str, Any]:
    """``raw`` as the tool's arguments; RejectEvent saying what is wrong otherwise."""
    spec = next((s for s in offered if s.name == tool), None)
    if spec is None:
        raise RejectEvent(
            f"edited arguments for {tool!r} cannot be checked: the tool is not in the "
            "tool catalog offered to this tenant"
        )
    try:
        arguments = json.loads(raw)
    except ValueError as exc:
        raise RejectEvent(f"edited arguments of {tool!r} are not valid JSON: {exc}") from None
    if not isinstance(arguments, dict):
        raise RejectEvent(f"edited arguments of {tool!r} must be a JSON object")
    try:
        problems = spec.argument_problems(arguments)
    except jsonschema.SchemaError as exc:
        raise RejectEvent(f"the schema of {tool!r} is invalid: {exc.message}") from None
    if problems:
        raise RejectEvent(
            f"edited arguments of {tool!r} do not fit its schema: {'; '.join(problems)}"
        )
    return arguments


def refused_result(status: str, reason: str) -> str:
    """What the model reads in place of the tool's result: denied or expired, and why."""
    return json.dumps({"status": status, "error": reason})
