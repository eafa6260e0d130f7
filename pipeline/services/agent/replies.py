"""What the agent tells the user, and the follow-up it schedules after an answer.

Every text for the user is a ``response_ready`` to the conversation's reply address (the
turn's, else the last one the user wrote from), remembered in the history. A turn's answer
also schedules the follow-up (``agent.follow_up_seconds``) once no turn is open; the
user's next message cancels it. Timers are ``timer_requested`` events for the scheduler.
"""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta

from pipeline.config.sections import AgentSettings
from pipeline.events.model import AGENT_VERSION, Event, from_millis, to_millis, utc_now
from pipeline.runtime.context import Context
from pipeline.services.agent.conversation import Conversation, Turn
from pipeline.services.agent.metrics import AgentMetrics

log = logging.getLogger(__name__)

FOLLOW_UP = "follow_up"


class Replies:
    """The ``response_ready`` and ``timer_requested`` events of the agent's handlers."""

    def __init__(self, config: AgentSettings, metrics: AgentMetrics) -> None:
        self.config = config
        self.metrics = metrics

    def answer(
        self,
        conversation: Conversation,
        turn: Turn,
        text: str,
        ctx: Context,
        stream_id: uuid.UUID | None = None,
    ) -> None:
        """Send a turn's answer and remember it; schedule the follow-up when no turn is
        left open. ``stream_id``: the preview of the answer, which it replaces."""
        reply_to = turn.reply_to or conversation.reply_to
        if reply_to is None:
            self.metrics.ignored["no_address"].inc()
            log.warning("no reply address for %s; answer dropped", ctx.event.conversation_id)
            return
        ctx.emit(
            "response_ready",
            {
                "reply_to": reply_to,
                "text": text,
                "in_reply_to": turn.in_reply_to,
                "proactive": False,
                "ingress_at": from_millis(turn.ingress_at),
                "stream_id": stream_id,
                AGENT_VERSION: self.config.version_label(),
            },
        )
        now = utc_now()
        conversation.remember("assistant", text, now, self.config.history_window)
        if self.config.follow_up_seconds is not None and not conversation.turns:
            due_at = now + timedelta(seconds=self.config.follow_up_seconds)
            timer_id = f"{FOLLOW_UP}:{ctx.event.conversation_id}"
            request = ctx.emit(
                "timer_requested",
                {
                    "timer_id": timer_id,
                    "action": "schedule",
                    "due_at": due_at,
                    "purpose": FOLLOW_UP,
                    "payload_json": None,
                    AGENT_VERSION: self.config.version_label(),
                },
            )
            conversation.follow_up = {
                "timer_id": timer_id,
                "due_at": to_millis(due_at),
                "request_id": str(request.id),
            }

    def say(self, conversation: Conversation, turn: Turn | None, text: str, ctx: Context) -> None:
        """Tell the user something that is not a turn's answer (no follow-up after it)."""
        reply_to = (turn.reply_to if turn else None) or conversation.reply_to
        if reply_to is None:
            self.metrics.ignored["no_address"].inc()
            return
        ctx.emit(
            "response_ready",
            {
                "reply_to": reply_to,
                "text": text,
                "in_reply_to": turn.in_reply_to if turn else None,
                "proactive": turn is None,
                "ingress_at": from_millis(turn.ingress_at)
                if turn
                else ctx.event.metadata.occurred_at,
                AGENT_VERSION: self.config.version_label(),
            },
        )
        conversation.remember("assistant", text, utc_now(), self.config.history_window)

    def proactive(self, conversation: Conversation, text: str, event: Event, ctx: Context) -> None:
        """A message nobody asked for (a follow-up, a webhook's), caused by ``event``."""
        if conversation.reply_to is None:
            self.metrics.ignored["no_address"].inc()
            log.info(
                "no reply address for %s yet; proactive message dropped", event.conversation_id
            )
            return
        body = conversation.proactive(text, event.metadata.occurred_at)
        ctx.emit("response_ready", {**body, AGENT_VERSION: self.config.version_label()})
        conversation.remember("assistant", text, utc_now(), self.config.history_window)

    def cancel_follow_up(self, conversation: Conversation, ctx: Context) -> None:
        """Cancel the conversation's pending follow-up, if it has one."""
        if conversation.follow_up is not None:
            self.cancel_timer(conversation.follow_up["timer_id"], FOLLOW_UP, ctx)
            conversation.follow_up = None

    def cancel_timer(self, timer_id: str, purpose: str, ctx: Context) -> None:
        """Ask the scheduler to cancel the timer ``timer_id``."""
        ctx.emit(
            "timer_requested",
            {
                "timer_id": timer_id,
                "action": "cancel",
                "due_at": None,
                "purpose": purpose,
                "payload_json": None,
                AGENT_VERSION: self.config.version_label(),
            },
        )
