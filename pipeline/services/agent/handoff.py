"""Handoff to a person: what starts one, what is kept meanwhile, what the model is told after.

A handoff starts when the user's message contains one of the tenant's phrases
(:func:`asked_for_person`), when the model calls the agent's own ``escalate`` tool
(:data:`ESCALATE`, offered next to the catalog's tools, never run by a tools service),
when a webhook rule sets the handoff fact, after too many failed turns in a row, or
when an operator writes first. While it lasts the agent answers nothing: it logs the
user's messages and the operators' replies in ``conversation.handoff["log"]``; on
release :func:`context_note` turns that log and the operator's note into the text the
model is given with the next turn.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from pipeline.config.sections import AgentSettings
from pipeline.events.model import from_millis, to_millis
from pipeline.llm.base import ToolSpec
from pipeline.services.agent.conversation import Conversation

ESCALATE = ToolSpec(
    "escalate",
    "Hand this conversation to a human operator. Call it when the user asks for a person, "
    "or when you cannot help and a person should take over. Say why in 'reason'.",
    {
        "type": "object",
        "properties": {
            "reason": {
                "type": "string",
                "description": "Why a person should take over, for the operator to read.",
            }
        },
        "required": ["reason"],
        "additionalProperties": False,
    },
)

_SPACES = re.compile(r"\s+")


def _normal(text: str) -> str:
    return _SPACES.sub(" ", text.casefold()).strip()


def phrases_for(config: AgentSettings, tenant: str | None) -> Sequence[str]:
    """The phrases by which ``tenant``'s users ask for a person."""
    phrases = config.handoff_phrases
    if tenant is not None and tenant in phrases:
        return phrases[tenant]
    return phrases.get("*", ())


def asked_for_person(text: str, phrases: Sequence[str]) -> str | None:
    """The phrase ``text`` contains (case and spacing ignored), or None."""
    normal = _normal(text)
    return next((p for p in phrases if p.strip() and _normal(p) in normal), None)


def start(
    conversation: Conversation,
    requested_by: str,
    reason: str,
    at: datetime,
    request_id: str,
    operator_id: str | None = None,
) -> None:
    """Mark the conversation as handed over (the caller emits the event)."""
    conversation.handoff = {
        "requested_by": requested_by,
        "reason": reason,
        "since": to_millis(at),
        "request_id": request_id,
        "operator_id": operator_id,
        "first_reply_at": None,
        "log": [],
    }
    conversation.failed_turns = 0
    conversation.context_note = None


def record(
    conversation: Conversation,
    role: str,
    text: str,
    at: datetime,
    window: int,
    operator_id: str | None = None,
) -> None:
    """Log what the user (``role="user"``) or an operator wrote during the handoff."""
    handoff = conversation.handoff
    assert handoff is not None
    entry: dict[str, Any] = {"role": role, "text": text, "at": to_millis(at)}
    if operator_id is not None:
        entry["operator_id"] = operator_id
    log: list[dict[str, Any]] = handoff.setdefault("log", [])
    log.append(entry)
    del log[:-window]


def context_note(
    handoff: Mapping[str, Any], operator_id: str, note: str | None, released_at: datetime
) -> str:
    """What the model is told about the handoff when the conversation comes back."""
    since = from_millis(int(handoff["since"])).isoformat(timespec="seconds")
    until = released_at.isoformat(timespec="seconds")
    lines = [
        f"A human operator had this conversation from {since} to {until} "
        f"(handed over because: {handoff.get('reason') or 'not given'}); you did not "
        "answer meanwhile. What was written then:",
    ]
    log = handoff.get("log") or []
    for entry in log:
        who = "User" if entry.get("role") == "user" else f"Operator {entry.get('operator_id', '')}"
        lines.append(f"- {who.strip()}: {entry.get('text', '')}")
    if not log:
        lines.append("- (nothing)")
    lines.append(f"Operator {operator_id} gave the conversation back to you.")
    if note:
        lines.append(f"Their note for you: {note}")
    return "\n".join(lines)
