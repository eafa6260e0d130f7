"""Tool calls whose outcome was unknown, decided by an operator: what the model is told.

A tools service that finds a call of an at-most-once tool begun but never finished (it
stopped while the call ran) does not run it again: its ``tool_result`` says ``unknown``,
the model reads ``{"status": "unknown", "error": "outcome unknown: ..."}`` and the turn
goes on. An operator then checks what happened and marks the call done or failed in the
console (``tool_outcome_decided``). The agent gives the model :func:`outcome_note` with a
new turn, so the user is told what became of the action; while a person has the
conversation, the note goes into the handoff's log instead, and the model reads it when
the conversation comes back.
"""

from __future__ import annotations

from pipeline.events.model import Event


def outcome_note(decision: Event) -> str:
    """What the model is told about an operator's decision on an uncertain call.

    Its first line is fixed in shape (the deterministic provider reads it): "Operator
    <id> checked the tool call <tool> (<call id>), whose outcome was unknown, and marked
    it done|failed."
    """
    outcome = decision["outcome"]
    lines = [
        f"Operator {decision['operator_id']} checked the tool call {decision['tool']} "
        f"({decision['call_id']}), whose outcome was unknown, and marked it {outcome}.",
    ]
    if outcome == "done":
        lines.append("The action took effect: do not call the tool again for it.")
    else:
        lines.append("The action did not take effect.")
    if decision.get("result_json"):
        lines.append(f"What the tool did: {decision['result_json']}")
    if decision.get("note"):
        lines.append(f"What the operator found: {decision['note']}")
    lines.append("Tell the user what became of the action they asked for.")
    return "\n".join(lines)
