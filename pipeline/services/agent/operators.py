"""The agent's handlers of the operators' events: operator_message, handoff_released,
approval_decided, tool_outcome_decided, and an approval's expiry (a timer_fired).

Each operator event ends with the agent's outcome, ``operator_action_handled`` caused by
it: accepted (its effect is the conversation's now) or ignored with the reason (nothing
to do). It is emitted last, so the ids of what the handler emitted before are those of
earlier versions. One the agent refuses (a conversation it does not have, of another
tenant) is dead-lettered with the reason instead (:class:`~pipeline.errors.RejectEvent`).
The console shows operators these outcomes, never their requests alone.

:class:`OperatorHandlers` is mixed into :class:`~pipeline.services.agent.service.Agent`,
which provides the parts they use: the state, the turns, the approval and handoff steps
(:mod:`.operator_steps`). Their rules are in :mod:`.handoff`, :mod:`.uncertain` and
:mod:`pipeline.toolbox.approvals`.
"""

from __future__ import annotations

import json
import logging

from pipeline.config.sections import AgentSettings
from pipeline.events.model import AGENT_VERSION, Event, from_millis, to_millis, utc_now
from pipeline.runtime.context import Context
from pipeline.services.agent import handoff, uncertain
from pipeline.services.agent.conversation import Conversation, Step, Turn
from pipeline.services.agent.metrics import AgentMetrics
from pipeline.services.agent.model_call import ModelCall
from pipeline.services.agent.operator_steps import (
    Approvals,
    Handoffs,
    arguments_of,
    replace_arguments,
)
from pipeline.services.agent.state import AgentState
from pipeline.services.agent.turns import Turns
from pipeline.toolbox import approvals

log = logging.getLogger(__name__)


class OperatorHandlers:
    """The handlers of the operators' events; mixed into the Agent."""

    # Provided by the Agent.
    config: AgentSettings
    metrics: AgentMetrics
    state: AgentState
    model: ModelCall
    turns: Turns
    approvals: Approvals
    handoffs: Handoffs

    async def on_operator_message(self, event: Event, ctx: Context) -> None:
        conversation = self.state.load(ctx, existing=True)
        operator, text = event["operator_id"], event["text"]
        if not conversation.mark_seen(str(event.id)):
            log.info("operator message %s was handled before", event.id)
            return  # its outcome was emitted then
        if conversation.handoff is None:  # an operator who writes first takes it
            reason = f"operator {operator} took the conversation"
            self.handoffs.hand_off(
                conversation, "operator", reason, ctx, operator_id=operator, say=False
            )
        handed_off = conversation.handoff
        assert handed_off is not None
        now = utc_now()
        if handed_off.get("first_reply_at") is None:
            handed_off["first_reply_at"] = to_millis(now)
            self.metrics.first_reply.observe(
                max(0.0, (now - from_millis(handed_off["since"])).total_seconds())
            )
        handoff.record(conversation, "operator", text, now, self.config.history_window, operator)
        self.metrics.cleanup.operator_replied(conversation)
        if conversation.reply_to is None:
            self.metrics.ignored["no_address"].inc()
            log.warning("no reply address for %s; operator message dropped", event.conversation_id)
        else:
            # Delivery sends it as any answer: retried, and never twice (its id is derived
            # from this event's). Its causation id names the operator's event.
            body = conversation.proactive(text, event.metadata.occurred_at)
            ctx.emit("response_ready", {**body, AGENT_VERSION: self.config.version_label()})
        self.state.save(ctx, conversation)
        self.handled(ctx)

    async def on_handoff_released(self, event: Event, ctx: Context) -> None:
        conversation = self.state.load(ctx, existing=True)
        handed_off = conversation.handoff
        if handed_off is None:
            self.metrics.ignored["not_handed_off"].inc()
            log.info("release of %s ignored: no person has it", event.conversation_id)
            self.handled(ctx, "no person has this conversation: the agent has it already")
            return
        conversation.context_note = handoff.context_note(
            handed_off, event["operator_id"], event.get("note"), event.metadata.occurred_at
        )
        conversation.handoff = None
        log.info("%s released by operator %s", event.conversation_id, event["operator_id"])
        self.state.save(ctx, conversation)
        self.handled(ctx)

    async def on_approval_decided(self, event: Event, ctx: Context) -> None:
        conversation = self.state.load(ctx, existing=True)
        approval_id = event["approval_id"]
        if approval_id in conversation.closed_approvals:
            why = "the approval was decided before, or expired"
        elif approval_id not in conversation.approvals:
            why = "the agent is waiting for no such approval"
        else:
            why = "the turn that asked for the approval is over"
        found = self.approvals.pending(conversation, approval_id, ctx)
        if found is None:
            self.handled(ctx, why)
            return
        approval, turn = found
        call_id, tool = approval["call_id"], approval["tool"]
        if event["decision"] == "approved":
            arguments = arguments_of(turn, call_id)
            edited = event.get("arguments_json")
            if edited is not None:
                offered = await self.model.tools.tools_for(ctx.event.metadata.tenant_id)
                arguments = approvals.edited_arguments(edited, tool, offered)
                replace_arguments(turn, call_id, arguments)
            self.approvals.close(conversation, event["approval_id"], ctx)
            self.turns.call_tool(call_id, tool, arguments, int(approval.get("depth", 0)), ctx)
            self.metrics.approvals["approved"].inc()
            outcome = "approved" if edited is None else "edited"
            self.metrics.cleanup.approval(conversation.tenant, outcome)
        else:
            self.approvals.close(conversation, event["approval_id"], ctx)
            # The note for the customer only: the internal reason is for operators and
            # the timeline, and what the model reads may be told to the user.
            note = event.get("note") or "no reason given"
            reason = f"an operator denied this call ({note})"
            self.metrics.approvals["denied"].inc()
            self.metrics.cleanup.approval(conversation.tenant, "denied")
            await self._refuse_call(conversation, turn, call_id, tool, "denied", reason, ctx)
        self.state.save(ctx, conversation)
        self.handled(ctx)

    async def on_tool_outcome_decided(self, event: Event, ctx: Context) -> None:
        """An operator marked a call whose outcome was unknown done or failed: a new turn
        gives the model the decision, and the user is told what became of the action."""
        conversation = self.state.load(ctx, existing=True)
        call_id, operator = event["call_id"], event["operator_id"]
        if not conversation.decide_call(call_id):
            self.metrics.ignored["late_decision"].inc()
            log.info("decision on call %s ignored: an operator decided it before", call_id)
            self.handled(ctx, "an operator decided this call before")
            return
        note, at = uncertain.outcome_note(event), event.metadata.occurred_at
        log.info(
            "call %s of %s marked %s by %s",
            call_id,
            event.conversation_id,
            event["outcome"],
            operator,
        )
        if conversation.handoff is not None:
            # A person has the conversation: the model reads it in the handoff's log.
            handoff.record(conversation, "operator", note, at, self.config.history_window, operator)
            self.state.save(ctx, conversation)
            self.handled(ctx)
            return
        conversation.context_note = "\n\n".join(filter(None, (conversation.context_note, note)))
        turn = Turn(
            correlation_id=str(event.id),  # its own: the turn that made the call may be open
            reply_to=conversation.reply_to,
            in_reply_to=None,
            ingress_at=to_millis(at),
        )
        await self.turns.advance(conversation, turn, ctx)
        self.state.save(ctx, conversation)
        self.handled(ctx)

    async def expire_approval(self, event: Event, ctx: Context) -> None:
        """An approval's expiry timer fired (no operator decided in time): the model reads
        that the call did not run."""
        conversation = self.state.load(ctx)
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
        self.metrics.cleanup.approval(conversation.tenant, "expired")
        turn = conversation.turns.get(approval["turn"])
        if turn is not None:
            seconds = f"{self.config.approval_timeout_seconds:g}"
            reason = f"no operator approved or denied this call within {seconds} seconds"
            await self._refuse_call(
                conversation, turn, approval["call_id"], approval["tool"], "expired", reason, ctx
            )
        self.state.save(ctx, conversation)

    def handled(self, ctx: Context, ignored: str | None = None) -> None:
        """The outcome of the operator's event being handled: accepted, or ignored with
        the reason ``ignored`` (emitted last: see the module's docstring)."""
        event = ctx.event
        ctx.emit(
            "operator_action_handled",
            {
                "action": event.type,
                "operator_id": event["operator_id"],
                "outcome": "accepted" if ignored is None else "ignored",
                "reason": ignored,
                AGENT_VERSION: self.config.version_label(),
            },
        )

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
            await self.turns.advance(conversation, turn, ctx)


def fired_by(event: Event, request_id: str | None) -> bool:
    """Whether a timer_fired came from the schedule request the state remembers.

    Two schedules can share a due time to the millisecond; the request id cannot.
    """
    causation = event.metadata.causation_id
    return request_id is None or causation is None or str(causation) == request_id
