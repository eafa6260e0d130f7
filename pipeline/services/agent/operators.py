"""The agent's side of the operator's seat: handoff and approvals.

:class:`OperatorSteps` holds the handlers of the operators' events (operator_message,
handoff_released, approval_decided), an approval's expiry, and the steps a turn takes
when a person is needed: asking for an approval instead of calling the tool, handing
the conversation over. :class:`~pipeline.services.agent.service.Agent` inherits them and
provides the turn machinery they use (loading and saving the conversation, advancing a
turn, telling the user).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from pipeline.config import Settings
from pipeline.config.sections import AgentSettings
from pipeline.events.model import Event, from_millis, to_millis, utc_now
from pipeline.llm.base import ToolCall
from pipeline.runtime.context import Context
from pipeline.services.agent import handoff
from pipeline.services.agent.conversation import Conversation, Step, Turn
from pipeline.services.agent.metrics import AgentMetrics
from pipeline.toolbox import approvals
from pipeline.toolbox.tool_offer import ToolOffer

log = logging.getLogger(__name__)


class OperatorSteps:
    """Handoff and approval handlers and steps; mixed into the Agent."""

    settings: Settings
    config: AgentSettings
    metrics: AgentMetrics
    tools: ToolOffer

    # Provided by the Agent.
    def _load(self, ctx: Context, *, existing: bool = False) -> Conversation:
        raise NotImplementedError

    def _save(self, ctx: Context, conversation: Conversation) -> None:
        raise NotImplementedError

    async def _advance(self, conversation: Conversation, turn: Turn, ctx: Context) -> None:
        raise NotImplementedError

    def _say(self, conversation: Conversation, turn: Turn | None, text: str, ctx: Context) -> None:
        raise NotImplementedError

    def _call_tool(
        self, call_id: str, tool: str, arguments: Mapping[str, Any], depth: int, ctx: Context
    ) -> None:
        raise NotImplementedError

    def _cancel_follow_up(self, conversation: Conversation, ctx: Context) -> None:
        raise NotImplementedError

    def _cancel_timer(self, timer_id: str, purpose: str, ctx: Context) -> None:
        raise NotImplementedError

    # ------------------------------------------------------------------ operators

    async def on_operator_message(self, event: Event, ctx: Context) -> None:
        conversation = self._load(ctx, existing=True)
        operator, text = event["operator_id"], event["text"]
        if not conversation.mark_seen(str(event.id)):
            log.info("operator message %s was handled before", event.id)
            return
        if conversation.handoff is None:  # an operator who writes first takes it
            reason = f"operator {operator} took the conversation"
            self._hand_off(conversation, "operator", reason, ctx, operator_id=operator, say=False)
        state = conversation.handoff
        assert state is not None
        now = utc_now()
        if state.get("first_reply_at") is None:
            state["first_reply_at"] = to_millis(now)
            self.metrics.first_reply.observe(
                max(0.0, (now - from_millis(state["since"])).total_seconds())
            )
        handoff.record(conversation, "operator", text, now, self.config.history_window, operator)
        if conversation.reply_to is None:
            self.metrics.ignored["no_address"].inc()
            log.warning("no reply address for %s; operator message dropped", event.conversation_id)
        else:
            # Delivery sends it as any answer: retried, and never twice (its id is derived
            # from this event's). Its causation id names the operator's event.
            ctx.emit("response_ready", conversation.proactive(text, event.metadata.occurred_at))
        self._save(ctx, conversation)

    async def on_handoff_released(self, event: Event, ctx: Context) -> None:
        conversation = self._load(ctx, existing=True)
        state = conversation.handoff
        if state is None:
            self.metrics.ignored["not_handed_off"].inc()
            log.info("release of %s ignored: no person has it", event.conversation_id)
            return
        conversation.context_note = handoff.context_note(
            state, event["operator_id"], event.get("note"), event.metadata.occurred_at
        )
        conversation.handoff = None
        log.info("%s released by operator %s", event.conversation_id, event["operator_id"])
        self._save(ctx, conversation)

    async def on_approval_decided(self, event: Event, ctx: Context) -> None:
        conversation = self._load(ctx, existing=True)
        found = self._pending_approval(conversation, event["approval_id"], ctx)
        if found is None:
            return
        approval, turn = found
        call_id, tool = approval["call_id"], approval["tool"]
        if event["decision"] == "approved":
            arguments = self._arguments_of(turn, call_id)
            edited = event.get("arguments_json")
            if edited is not None:
                offered = await self.tools.tools_for(ctx.event.metadata.tenant_id)
                arguments = approvals.edited_arguments(edited, tool, offered)
                _replace_arguments(turn, call_id, arguments)
            self._close_approval(conversation, event["approval_id"], ctx)
            self._call_tool(call_id, tool, arguments, int(approval.get("depth", 0)), ctx)
            self.metrics.approvals["approved"].inc()
        else:
            self._close_approval(conversation, event["approval_id"], ctx)
            note = event.get("note") or "no reason given"
            reason = f"an operator denied this call ({note})"
            self.metrics.approvals["denied"].inc()
            await self._refuse_call(conversation, turn, call_id, tool, "denied", reason, ctx)
        self._save(ctx, conversation)

    async def _expire(self, event: Event, ctx: Context) -> None:
        conversation = self._load(ctx)
        payload = json.loads(event.get("payload_json") or "{}")
        approval_id = payload.get("approval_id") if isinstance(payload, dict) else None
        approval = conversation.approvals.get(str(approval_id))
        if (
            approval is None
            or approval.get("timer_id") != event["timer_id"]
            or not fired_by(event, approval.get("request_id"))
        ):
            self.metrics.ignored["stale_timer"].inc()
            log.info("approval expiry %s is no longer wanted", event["timer_id"])
            return
        conversation.close_approval(str(approval_id))
        self.metrics.approvals["expired"].inc()
        turn = conversation.turns.get(approval["turn"])
        if turn is not None:
            seconds = f"{self.config.approval_timeout_seconds:g}"
            reason = f"no operator approved or denied this call within {seconds} seconds"
            await self._refuse_call(
                conversation, turn, approval["call_id"], approval["tool"], "expired", reason, ctx
            )
        self._save(ctx, conversation)

    # ------------------------------------------------------------------ approvals

    def _ask_approval(
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
            },
        )
        conversation.approvals[approval] = {
            "call_id": call_id,
            "tool": call.name,
            "turn": turn.correlation_id,
            "depth": turn.depth,
            "expires_at": to_millis(expires_at),
            "timer_id": timer,
            "request_id": str(request.id),
        }

    def _pending_approval(
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
            self._close_approval(conversation, approval_id, ctx)
            self.metrics.ignored["unknown_call"].inc()
            log.info("decision on %s ignored: its turn is gone", approval_id)
            self._save(ctx, conversation)
            return None
        return approval, turn

    def _close_approval(self, conversation: Conversation, approval_id: str, ctx: Context) -> None:
        """Close a pending approval and cancel its expiry timer."""
        approval = conversation.approvals.get(approval_id)
        if approval is not None:
            self._cancel_timer(approval["timer_id"], approvals.EXPIRY, ctx)
        conversation.close_approval(approval_id)

    async def _refuse_call(
        self,
        conversation: Conversation,
        turn: Turn,
        call_id: str,
        tool: str,
        status: str,
        reason: str,
        ctx: Context,
    ) -> None:
        """The model reads that the call did not run (denied, expired) and goes on."""
        if call_id in turn.pending:
            turn.pending.remove(call_id)
        content = approvals.refused_result(status, reason)
        turn.steps.append(Step(result_of=call_id, tool=tool, content=content))
        if not turn.pending:
            await self._advance(conversation, turn, ctx)

    def _arguments_of(self, turn: Turn, call_id: str) -> Mapping[str, Any]:
        for step in turn.steps:
            for call in step.calls:
                if call.id == call_id:
                    return call.arguments
        return {}

    # ------------------------------------------------------------------ handoff

    def _hand_off(
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
        self._cancel_follow_up(conversation, ctx)
        for approval_id in list(conversation.approvals):
            self._close_approval(conversation, approval_id, ctx)
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
            },
        )
        handoff.start(conversation, requested_by, reason, utc_now(), str(requested.id), operator_id)
        self.metrics.handoffs[requested_by].inc()
        log.info("%s handed to a person (%s): %s", ctx.event.conversation_id, requested_by, reason)
        if say and self.config.handoff_text:
            self._say(conversation, turn, self.config.handoff_text, ctx)


def _replace_arguments(turn: Turn, call_id: str, arguments: Mapping[str, Any]) -> None:
    """Show the model the arguments the call ran with (an operator edited them)."""
    for step in turn.steps:
        step.calls = [
            ToolCall(c.id, c.name, arguments) if c.id == call_id else c for c in step.calls
        ]


def fired_by(event: Event, request_id: str | None) -> bool:
    """Whether a timer_fired came from the schedule request the state remembers.

    Two schedules can share a due time to the millisecond; the request id cannot.
    """
    causation = event.metadata.causation_id
    return request_id is None or causation is None or str(causation) == request_id
