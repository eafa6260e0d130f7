"""A turn's next step, decided from what the model answered.

:meth:`Turns.advance` asks the model (:mod:`.model_call`), then answers the user, hands the
conversation to a person (the model called ``escalate``), apologises (the model failed, or
wanted more tool calls than ``agent.max_tool_depth``), or calls the tools it asked for:
``tool_called`` for each, or ``approval_requested`` for a tool that needs an operator's
approval. A turn waiting for tool results is kept in the conversation (at most
``agent.max_open_turns``) and advanced again when the last result arrives. Failed turns in a
row (``agent.handoff_after_failed_turns``) hand the conversation over.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Mapping
from typing import Any

from pipeline.config.sections import AgentSettings
from pipeline.events.model import AGENT_VERSION
from pipeline.llm.base import ToolCall
from pipeline.runtime.context import Context
from pipeline.services.agent import handoff
from pipeline.services.agent.conversation import Conversation, Step, Turn
from pipeline.services.agent.metrics import AgentMetrics
from pipeline.services.agent.model_call import ModelCall
from pipeline.services.agent.operator_steps import Approvals, Handoffs
from pipeline.services.agent.replies import Replies
from pipeline.toolbox import approvals

log = logging.getLogger(__name__)

TOO_DEEP = (
    "Sorry, I could not finish that: it needed more tool calls than I am allowed per "
    "message. Could you break the question into smaller steps?"
)
LLM_DOWN = "Sorry, I cannot answer right now. Please try again in a moment."
FAILED = {"too_deep", "llm_failed"}


class Turns:
    """Advances turns: the model's completion, then the answer or the tool calls."""

    def __init__(
        self,
        config: AgentSettings,
        metrics: AgentMetrics,
        model: ModelCall,
        replies: Replies,
        approvals: Approvals,
        handoffs: Handoffs,
    ) -> None:
        self.config = config
        self.metrics = metrics
        self.model = model
        self.replies = replies
        self.approvals = approvals
        self.handoffs = handoffs

    async def advance(self, conversation: Conversation, turn: Turn, ctx: Context) -> None:
        """Ask the model, then either call tools (the turn waits) or answer."""
        completion = await self.model.complete(conversation, turn, ctx)
        if completion is None:
            self.answer(conversation, turn, LLM_DOWN, "llm_failed", ctx)
            return
        calls = completion.tool_calls
        if not calls:
            stream_id = self.model.stream_id(conversation, turn, ctx)
            text = completion.text or ""
            self.answer(conversation, turn, text, "answered", ctx, stream_id=stream_id)
            return
        escalate = next((c for c in calls if c.name == handoff.ESCALATE.name), None)
        if escalate is not None and self.config.escalate_tool:
            reason = str(escalate.arguments.get("reason") or completion.text or "not given")
            self.handoffs.hand_off(conversation, "model", reason, ctx, turn=turn)
            return
        if turn.depth + len(calls) > self.config.max_tool_depth:
            log.info(
                "turn %s of %s wants tool call %d, beyond max_tool_depth %d",
                turn.correlation_id,
                ctx.event.conversation_id,
                turn.depth + len(calls),
                self.config.max_tool_depth,
            )
            self.answer(conversation, turn, TOO_DEEP, "too_deep", ctx)
            return
        issued: list[ToolCall] = []
        waiting = False
        for index, call in enumerate(calls):
            # Derived from the handled event, not the model's own id: the same on every
            # re-handling of the event, so the tools service and its journal know the call.
            call_id = _call_id(ctx, index)
            issued.append(ToolCall(call_id, call.name, call.arguments))
            if approvals.needs_approval(self.config, conversation.tenant, call.name):
                self.approvals.ask(conversation, turn, call_id, call, completion.text, ctx)
                waiting = True
            else:
                self.call_tool(call_id, call.name, call.arguments, turn.depth, ctx)
            turn.depth += 1
        turn.steps.append(Step(calls=issued))
        turn.pending = [c.id for c in issued]
        conversation.turns[turn.correlation_id] = turn
        while len(conversation.turns) > self.config.max_open_turns:
            oldest = next(iter(conversation.turns))
            log.warning("dropping unanswered turn %s: too many open turns", oldest)
            del conversation.turns[oldest]
        if waiting and self.config.approval_waiting_text:
            self.replies.say(conversation, turn, self.config.approval_waiting_text, ctx)

    def call_tool(
        self, call_id: str, tool: str, arguments: Mapping[str, Any], depth: int, ctx: Context
    ) -> None:
        """``tool_called`` for the tools service, with the agent's deadline for the call."""
        ctx.emit(
            "tool_called",
            {
                "call_id": call_id,
                "tool": tool,
                "arguments_json": json.dumps(dict(arguments)),
                "timeout_ms": int(self.config.tool_timeout_seconds * 1000),
                "depth": depth,
                AGENT_VERSION: self.config.version_label(),
            },
        )
        self.metrics.tool_calls.labels(self.metrics.service, tool).inc()

    def answer(
        self,
        conversation: Conversation,
        turn: Turn,
        text: str,
        outcome: str,
        ctx: Context,
        *,
        stream_id: uuid.UUID | None = None,
    ) -> None:
        """Close ``turn`` with ``text`` (its ``outcome`` counted; ``stream_id`` the preview
        it replaces), or hand the conversation over when it is one failed turn too many."""
        conversation.turns.pop(turn.correlation_id, None)
        if outcome in FAILED:
            conversation.failed_turns += 1
            limit = self.config.handoff_after_failed_turns
            if limit is not None and conversation.failed_turns >= limit:
                self.metrics.turns[outcome].inc()
                reason = f"{conversation.failed_turns} failed turns in a row (last: {outcome})"
                self.handoffs.hand_off(conversation, "failed_turns", reason, ctx, turn=turn)
                return
        else:
            conversation.failed_turns = 0
        conversation.context_note = None  # the model saw the handoff's note in this turn
        self.metrics.turns[outcome].inc()
        self.replies.answer(conversation, turn, text, ctx, stream_id)
        question = next(
            (h["text"] for h in reversed(conversation.history) if h["role"] == "user"), None
        )
        self.metrics.cleanup.answered(conversation, question)


def _call_id(ctx: Context, index: int) -> str:
    return "call_" + uuid.uuid5(ctx.event.id, f"tool/{index}").hex[:24]
