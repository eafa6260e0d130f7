"""A conversation's state as the agent keeps it, and its JSON form in the changelog.

``{"v": 1, "tenant": "..." | null, "reply_to": {...} | null, "history": [{"role",
"text", "at"}], "facts": {}, "turns": {correlation_id: {...}}, "follow_up": {"timer_id",
"due_at", "request_id"} | null, "seen": [event ids], "handoff": {...} | null,
"context_note": "..." | null, "approvals": {approval_id: {...}}, "closed_approvals":
[approval ids], "decided_calls": [call ids], "failed_turns": 0, "summary": "..." | null,
"last_answer": {...} | null}``. A turn is a user message the agent has not answered yet
because it waits for tool results (or approvals); it keeps the tool calls and results
the model saw.
``tenant`` is the tenant the conversation belongs to, set by its first event (state
written before tenants were stored has none and takes the next event's).

``handoff`` is set while a person has the conversation: who asked and why, since when,
and the log of what the user and the operators wrote meanwhile. On release the log
becomes ``context_note``, given to the model with the next turn. ``approvals`` are the
tool calls waiting for an operator's decision; ``closed_approvals`` the ones that
expired, so a late decision is told from an unknown one. ``decided_calls`` are the tool
calls whose unknown outcome an operator decided, so a second decision on one is ignored.
``summary`` holds the messages that left the history (:mod:`.summary`): the oldest,
folded when the history outgrew the model's context budget or ``agent.history_window``.
State written before these fields existed reads with none of them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pipeline.events.model import to_millis
from pipeline.llm.base import ChatMessage, ToolCall
from pipeline.services.agent import summary as summaries

VERSION = 1
SEEN_LIMIT = 32
SUMMARY_TOKENS = 1_000  # the summary's size when no setting says (agent.summary_max_tokens)


@dataclass(slots=True)
class Step:
    """A step of a turn: the model's tool calls, or one call's result."""

    calls: list[ToolCall] = field(default_factory=list)
    result_of: str | None = None  # call id, for a result
    tool: str | None = None
    content: str | None = None

    def message(self) -> ChatMessage:
        if self.result_of is not None:
            return ChatMessage(
                "tool", self.content or "", tool_call_id=self.result_of, name=self.tool
            )
        return ChatMessage("assistant", None, tool_calls=tuple(self.calls))

    def to_json(self) -> dict[str, Any]:
        if self.result_of is not None:
            return {"result_of": self.result_of, "tool": self.tool, "content": self.content}
        return {
            "calls": [
                {"id": c.id, "tool": c.name, "arguments": dict(c.arguments)} for c in self.calls
            ]
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Step:
        if data.get("result_of") is not None:
            return cls(
                result_of=data["result_of"], tool=data.get("tool"), content=data.get("content")
            )
        return cls(
            calls=[ToolCall(c["id"], c["tool"], c.get("arguments", {})) for c in data["calls"]]
        )


@dataclass(slots=True)
class Turn:
    """A user message being answered: where the answer goes and what the tools said."""

    correlation_id: str
    reply_to: dict[str, Any] | None
    in_reply_to: str | None
    ingress_at: int
    depth: int = 0
    pending: list[str] = field(default_factory=list)
    steps: list[Step] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "correlation_id": self.correlation_id,
            "reply_to": self.reply_to,
            "in_reply_to": self.in_reply_to,
            "ingress_at": self.ingress_at,
            "depth": self.depth,
            "pending": list(self.pending),
            "steps": [s.to_json() for s in self.steps],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Turn:
        return cls(
            correlation_id=data["correlation_id"],
            reply_to=data.get("reply_to"),
            in_reply_to=data.get("in_reply_to"),
            ingress_at=int(data["ingress_at"]),
            depth=int(data.get("depth", 0)),
            pending=list(data.get("pending", [])),
            steps=[Step.from_json(s) for s in data.get("steps", [])],
        )


@dataclass(slots=True)
class Conversation:
    """Everything the agent knows about one conversation."""

    tenant: str | None = None
    reply_to: dict[str, Any] | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    facts: dict[str, str] = field(default_factory=dict)
    turns: dict[str, Turn] = field(default_factory=dict)
    follow_up: dict[str, Any] | None = None
    seen: list[str] = field(default_factory=list)
    handoff: dict[str, Any] | None = None
    context_note: str | None = None
    approvals: dict[str, dict[str, Any]] = field(default_factory=dict)
    closed_approvals: list[str] = field(default_factory=list)
    decided_calls: list[str] = field(default_factory=list)
    failed_turns: int = 0
    summary: str | None = None
    # The last answer to a user's turn, watched for human cleanup: {"at", "question",
    # "version"} (see pipeline.services.agent.cleanup).
    last_answer: dict[str, Any] | None = None

    def proactive(self, text: str, ingress_at: datetime) -> dict[str, Any]:
        """The response_ready body of a message the user did not ask for (a webhook's
        proactive text, an operator's reply), to the conversation's reply address."""
        return {
            "reply_to": self.reply_to,
            "text": text,
            "in_reply_to": None,
            "proactive": True,
            "ingress_at": ingress_at,
        }

    def remember(
        self,
        role: str,
        text: str,
        at: datetime,
        window: int,
        summary_tokens: int = SUMMARY_TOKENS,
    ) -> None:
        """Append to the history, keeping the last ``window`` messages; older ones are
        folded into the summary (of at most ``summary_tokens``)."""
        self.history.append({"role": role, "text": text, "at": to_millis(at)})
        if len(self.history) > window:
            self.fold(len(self.history) - window, summary_tokens)

    def fold(self, count: int, summary_tokens: int) -> list[dict[str, Any]]:
        """Move the ``count`` oldest messages of the history into the summary; returns
        them."""
        folded, self.history = self.history[:count], self.history[count:]
        if folded:
            self.summary = summaries.fold(self.summary, folded, summary_tokens) or None
        return folded

    def mark_seen(self, event_id: str) -> bool:
        """Record a handled event; False when it was handled before (a repeat)."""
        if event_id in self.seen:
            return False
        self.seen.append(event_id)
        del self.seen[:-SEEN_LIMIT]
        return True

    def close_approval(self, approval_id: str) -> None:
        """Forget a pending approval, remembering its id as closed (bounded)."""
        self.approvals.pop(approval_id, None)
        if approval_id not in self.closed_approvals:
            self.closed_approvals.append(approval_id)
            del self.closed_approvals[:-SEEN_LIMIT]

    def decide_call(self, call_id: str) -> bool:
        """Record an operator's decision on a call whose outcome was unknown; False when
        the call was decided before (bounded)."""
        if call_id in self.decided_calls:
            return False
        self.decided_calls.append(call_id)
        del self.decided_calls[:-SEEN_LIMIT]
        return True

    def turn_waiting_for(self, call_id: str) -> Turn | None:
        return next((t for t in self.turns.values() if call_id in t.pending), None)

    def messages(self, turn: Turn | None = None) -> tuple[ChatMessage, ...]:
        """The history as chat messages, then the turn's tool calls and results."""
        out = [
            ChatMessage("user" if h["role"] == "user" else "assistant", h["text"])
            for h in self.history
        ]
        if turn is not None:
            out.extend(s.message() for s in turn.steps)
        return tuple(out)

    def to_json(self) -> dict[str, Any]:
        return {
            "v": VERSION,
            "tenant": self.tenant,
            "reply_to": self.reply_to,
            "history": self.history,
            "facts": self.facts,
            "turns": {k: t.to_json() for k, t in self.turns.items()},
            "follow_up": self.follow_up,
            "seen": self.seen,
            "handoff": self.handoff,
            "context_note": self.context_note,
            "approvals": self.approvals,
            "closed_approvals": self.closed_approvals,
            "decided_calls": self.decided_calls,
            "failed_turns": self.failed_turns,
            "summary": self.summary,
            "last_answer": self.last_answer,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> Conversation:
        if data is None:
            return cls()
        return cls(
            tenant=data.get("tenant"),
            reply_to=data.get("reply_to"),
            history=list(data.get("history", [])),
            facts=dict(data.get("facts", {})),
            turns={k: Turn.from_json(t) for k, t in data.get("turns", {}).items()},
            follow_up=data.get("follow_up"),
            seen=list(data.get("seen", [])),
            handoff=data.get("handoff"),
            context_note=data.get("context_note"),
            approvals=dict(data.get("approvals", {})),
            closed_approvals=list(data.get("closed_approvals", [])),
            decided_calls=list(data.get("decided_calls", [])),
            failed_turns=int(data.get("failed_turns", 0)),
            summary=data.get("summary"),
            last_answer=data.get("last_answer"),
        )
