"""The steps a turn takes when a person is needed: asking an operator to approve a tool
call, and handing the conversation to a person.

:class:`Approvals` asks (``approval_requested`` instead of ``tool_called``, with a timer for
its expiry), finds the pending approval a decision names, and closes one. :class:`Handoffs`
gives a conversation to a person. Their rules are in :mod:`pipeline.toolbox.approvals` and
:mod:`.handoff`; the handlers of the operators' events in :mod:`.operators`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from pipeline.config.sections import AgentSettings
from pipeline.events.model import AGENT_VERSION, to_millis, utc_now
from pipeline.llm.base import ToolCall
from pipeline.runtime.context import Context
from pipeline.services.agent import handoff
from pipeline.services.agent.conversation import Conversation, Turn
from pipeline.services.agent.metrics import AgentMetrics
from pipeline.services.agent.replies import Replies
from pipeline.services.agent.state import AgentState
from pipeline.toolbox import approvals

log = logging.getLogger(__name__)


class Approvals:
    """Tool calls waiting for an operator's approval, per conversation."""

    def __init__(
        self, config: AgentSettings, metrics: AgentMetrics, state: AgentState, replies: Replies
    ) -> None:
        self.config = config
        self.metrics = metrics
        self.state = state
        self.replies = replies

    def ask(
        self,
        conversation: Conversation,
        turn: Turn,
        call_id: str,
        call: ToolCall,
        reason: str | None,
        ctx: Context,
    ) -> None:
        """approval_requested instead of tool_called, and a timer for its expiry."""
        approval = approvals.approval_id(ctx.event.id, call_id)
        expires_at = utc_now() + timedelta(seconds=self.config.approval_timeout_seconds)
        ctx.emit(
            "approval_requested",
            {
                "approval_id": approval,
                "call_id": call_id,
                "tool": call.name,
                "arguments_json": json.dumps(dict(call.arguments)),
                "reason": reason or "",
                "expires_at": expires_at,
                AGENT_VERSION: self.config.version_label(),
            },
        )
        timer = approvals.timer_id(approval)
        request = ctx.emit(
            "timer_requested",
            {
                "timer_id": timer,
                "action": "schedule",
                "due_at": expires_at,
                "purpose": approvals.EXPIRY,
                "payload_json": json.dumps({"approval_id": approval}),
                AGENT_VERSION: self.config.version_label(),
            },
        )
        self.metrics.cleanup.approval(conversation.tenant, "requested")
        conversation.approvals[approval] = {
            "call_id": call_id,
            "tool": call.name,
            "turn": turn.correlation_id,
            "depth": turn.depth,
            "expires_at": to_millis(expires_at),
            "timer_id": timer,
            "request_id": str(request.id),
        }

    def pending(
        self, conversation: Conversation, approval_id: str, ctx: Context
    ) -> tuple[dict[str, Any], Turn] | None:
        """The approval a decision names and its turn, or None (counted) when it is
        closed, unknown, or its turn was dropped."""
        approval = conversation.approvals.get(approval_id)
        if approval is None:
            reason = (
                "late_decision"
                if approval_id in conversation.closed_approvals
                else "unknown_approval"
            )
            self.metrics.ignored[reason].inc()
            log.info("decision on %s ignored (%s)", approval_id, reason)
            return None
        turn = conversation.turns.get(approval["turn"])
        if turn is None or approval["call_id"] not in turn.pending:
            self.close(conversation, approval_id, ctx)
            self.metrics.ignored["unknown_call"].inc()
            log.info("decision on %s ignored: its turn is gone", approval_id)
            self.state.save(ctx, conversation)
            return None
        return approval, turn

    def close(self, conversation: Conversation, approval_id: str, ctx: Context) -> None:
        """Close a pending approval and cancel its expiry timer."""
        approval = conversation.approvals.get(approval_id)
        if approval is not None:
            self.replies.cancel_timer(approval["timer_id"], approvals.EXPIRY, ctx)
        conversation.close_approval(approval_id)


def arguments_of(turn: Turn, call_id: str) -> Mapping[str, Any]:
    """The arguments the model gave the call ``call_id`` of ``turn``."""
    for step in turn.steps:
        for call in step.calls:
            if call.id == call_id:
                return call.arguments
    return {}


def replace_arguments(turn: Turn, call_id: str, arguments: Mapping[str, Any]) -> None:
    """Show the model the arguments the call ran with (an operator edited them)."""
    for step in turn.steps:
        step.calls = [
            ToolCall(c.id, c.name, arguments) if c.id == call_id else c for c in step.calls
        ]


class Handoffs:
    """Gives conversations to a person."""

    def __init__(
        self, config: AgentSettings, metrics: AgentMetrics, replies: Replies, approvals: Approvals
    ) -> None:
        self.config = config
        self.metrics = metrics
        self.replies = replies
        self.approvals = approvals

    def hand_off(
        self,
        conversation: Conversation,
        requested_by: str,
        reason: str,
        ctx: Context,
        *,
        turn: Turn | None = None,
        operator_id: str | None = None,
        user_text: str | None = None,
        say: bool = True,
    ) -> None:
        """Give the conversation to a person: handoff_requested, open turns and
        approvals closed, the follow-up cancelled, the user told (``handoff_text``)."""
        if conversation.handoff is not None:
            return
        self.replies.cancel_follow_up(conversation, ctx)
        for approval_id in list(conversation.approvals):
            self.approvals.close(conversation, approval_id, ctx)
        if turn is not None:
            self.metrics.turns["handed_off"].inc()
        conversation.turns.clear()  # late tool results are then ignored as unknown calls
        requested = ctx.emit(
            "handoff_requested",
            {
                "requested_by": requested_by,
                "reason": reason,
                "operator_id": operator_id,
                "user_text": user_text,
                AGENT_VERSION: self.config.version_label(),
            },
        )
        handoff.start(conversation, requested_by, reason, utc_now(), str(requested.id), operator_id)
        self.metrics.handoffs[requested_by].inc()
        self.metrics.cleanup.handed_off(conversation, requested_by)
        log.info("%s handed to a person (%s): %s", ctx.event.conversation_id, requested_by, reason)
        if say and self.config.handoff_text:
            self.replies.say(conversation, turn, self.config.handoff_text, ctx)
