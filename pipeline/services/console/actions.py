"""What an operator does, as events carrying the operator's id: the audit trail is the topics.

- **take** a conversation waiting for a person: ``handoff_requested`` with
  ``requested_by=operator`` and the operator's id (what the agent itself emits when an
  operator writes first); the agent, already silent, is not concerned.
- **reply**: ``operator_message``. An operator writing in a conversation the agent has
  takes it over (the agent does that on receipt); delivery sends it on the user's channel.
- **release**: ``handoff_released`` with an optional note for the agent.
- **approve / deny / edit** a pending approval: ``approval_decided``; edited arguments
  must be a JSON object the tool's schema (from the tool catalog) accepts, checked here
  with the check the agent makes (:func:`pipeline.toolbox.approvals.edited_arguments`),
  so a bad edit is refused with the reason before anything is produced. A decision
  carries two notes: ``note``, for the customer (with a denial the model is told it, and
  answers the user with it), and ``internal_reason``, for operators and the timeline
  only (never passed to the model).
- **mark done / mark failed** a tool call whose outcome is unknown:
  ``tool_outcome_decided``, caused by the ``tool_result`` that said unknown, with what the
  operator found (a note) and, optionally, what the tool did (JSON, checked to be JSON).

Every action takes the operator's :class:`~pipeline.services.console.access.Access`:
an operator whose role is below ``agent`` is refused (403) and one of another tenant is
told the conversation, approval or call does not exist (404), as for one the console
does not know; nothing is produced (:class:`OperatorActionRefused`, a 4xx with the
reason).
"""

from __future__ import annotations

import json
from typing import Any

from pipeline.errors import OperatorActionRefused, RejectEvent
from pipeline.events.model import Event
from pipeline.runtime.publisher import Publisher
from pipeline.services.console.access import Access
from pipeline.services.console.metrics import ConsoleMetrics
from pipeline.services.console.uncertain import UncertainCall
from pipeline.services.console.view import ConsoleView, Conversation
from pipeline.toolbox.approvals import edited_arguments
from pipeline.toolbox.tool_offer import ToolOffer

MAX_TEXT_CHARS = 32_768
OUTCOMES = ("done", "failed")


class OperatorActions:
    def __init__(
        self,
        view: ConsoleView,
        tools: ToolOffer,
        metrics: ConsoleMetrics,
        publisher: Publisher | None = None,
        ack_timeout: float = 10.0,
    ) -> None:
        self.view = view
        self.tools = tools
        self.metrics = metrics
        self.publisher = publisher
        self.ack_timeout = ack_timeout

    async def take(self, who: Access, conversation_id: str) -> Event:
        who.require("agent", "take a conversation")
        operator = who.operator
        conversation = self._conversation(who, conversation_id)
        if not conversation.handed_off:
            raise OperatorActionRefused(
                409, "the agent has this conversation: write to it to take it over"
            )
        if conversation.operator is not None:
            raise OperatorActionRefused(409, f"operator {conversation.operator} has it already")
        data = {
            "requested_by": "operator",
            "reason": f"operator {operator} took the conversation",
            "operator_id": operator,
            "user_text": None,
        }
        return await self._publish("take", "handoff_requested", conversation, data)

    async def reply(self, who: Access, conversation_id: str, text: str) -> Event:
        who.require("agent", "reply")
        conversation = self._conversation(who, conversation_id)
        text = text.strip()
        if not text:
            raise OperatorActionRefused(400, "the reply is empty")
        if len(text) > MAX_TEXT_CHARS:
            raise OperatorActionRefused(
                413, f"the reply is longer than {MAX_TEXT_CHARS} characters"
            )
        data = {"operator_id": who.operator, "text": text}
        return await self._publish("reply", "operator_message", conversation, data)

    async def release(self, who: Access, conversation_id: str, note: str | None) -> Event:
        who.require("agent", "give a conversation back")
        conversation = self._conversation(who, conversation_id)
        if not conversation.handed_off:
            raise OperatorActionRefused(409, "no person has this conversation")
        data = {"operator_id": who.operator, "note": (note or "").strip() or None}
        return await self._publish("release", "handoff_released", conversation, data)

    async def decide(
        self,
        who: Access,
        approval_id: str,
        decision: str,
        arguments_json: str | None = None,
        note: str | None = None,
        internal_reason: str | None = None,
    ) -> Event:
        """Approve or deny a pending approval; ``note`` is for the customer, the
        ``internal_reason`` for operators and the timeline only."""
        who.require("agent", "decide an approval")
        approval = who.one(
            self.view.approval(approval_id),
            f"no pending approval {approval_id!r} (decided or expired?)",
        )
        if decision not in ("approved", "denied"):
            raise OperatorActionRefused(400, "decision must be approved or denied")
        action = "approve" if decision == "approved" else "deny"
        edited = None
        if decision == "approved" and arguments_json and arguments_json.strip():
            try:
                same = json.loads(arguments_json) == json.loads(approval.arguments_json)
            except ValueError:
                same = False
            if not same:
                offered = await self.tools.tools_for(approval.tenant)
                try:
                    arguments = edited_arguments(arguments_json, approval.tool, offered)
                except RejectEvent as exc:
                    self.metrics.refused.labels("invalid").inc()
                    raise OperatorActionRefused(400, str(exc)) from None
                edited, action = json.dumps(arguments), "edit"
        conversation = self._conversation(who, approval.conversation_id)
        data = {
            "approval_id": approval_id,
            "decision": decision,
            "operator_id": who.operator,
            "arguments_json": edited,
            "note": (note or "").strip() or None,
            "internal_reason": (internal_reason or "").strip() or None,
        }
        return await self._publish(action, "approval_decided", conversation, data)

    async def mark(
        self,
        who: Access,
        call_id: str,
        outcome: str,
        result_json: str | None = None,
        note: str | None = None,
    ) -> Event:
        """Decide a tool call whose outcome is unknown: ``done`` or ``failed``."""
        who.require("agent", "decide an uncertain action")
        call = self.uncertain(who, call_id)
        if outcome not in OUTCOMES:
            raise OperatorActionRefused(400, "outcome must be done or failed")
        result = (result_json or "").strip() or None
        if result is not None:
            try:
                json.loads(result)
            except ValueError as exc:
                self.metrics.refused.labels("invalid").inc()
                raise OperatorActionRefused(400, f"what the tool did is not JSON: {exc}") from None
        conversation = self._conversation(who, call.conversation_id)
        if call.tenant != conversation.tenant:
            raise OperatorActionRefused(
                409, f"call {call_id!r} is of tenant {call.tenant!r}, not the conversation's"
            )
        data = {
            "call_id": call.call_id,
            "tool": call.tool,
            "outcome": outcome,
            "operator_id": who.operator,
            "result_json": result,
            "note": (note or "").strip() or None,
        }
        return await self._publish(
            f"mark_{outcome}", "tool_outcome_decided", conversation, data, cause=call.result
        )

    def uncertain(self, who: Access, call_id: str) -> UncertainCall:
        return who.one(
            self.view.uncertain_call(call_id),
            f"no tool call {call_id!r} waits for a decision (decided already?)",
        )

    def _conversation(self, who: Access, conversation_id: str) -> Conversation:
        return who.one(
            self.view.conversations.get(conversation_id),
            f"no conversation {conversation_id!r} in the console's view",
        )

    async def _publish(
        self,
        action: str,
        event_type: str,
        conversation: Conversation,
        data: dict[str, Any],
        cause: Event | None = None,
    ) -> Event:
        if self.publisher is None:
            raise OperatorActionRefused(503, "the console's Kafka producer is not running yet")
        event = await self.publisher.publish(
            event_type,
            data,
            conversation_id=conversation.conversation_id,
            tenant_id=conversation.tenant,
            cause=cause,
            ack_timeout=self.ack_timeout,
        )
        self.metrics.actions.labels(action).inc()
        # Shown at once, before the reader reads it back (folding it twice is harmless).
        if self.view.apply(event):
            await self.view.changed()
        return event
