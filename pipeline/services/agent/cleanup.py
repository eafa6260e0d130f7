"""Human cleanup, measured live: how much work people still do after the agent answered,
per tenant and per agent version (the label every agent event carries).

The agent owns each conversation's state, so it counts each signal once, in order:

- ``conversations`` started and user ``turns`` taken (the denominators);
- ``handoffs`` by who asked (the handoff rate is handoffs per conversation);
- ``first_answers``: every answer to a user's turn; an answer is *reopened* when, within
  ``agent.cleanup_window_seconds``, the conversation is handed to a person, an operator
  replies, or the user asks the same question again (a message sharing at least half of
  its words with the question: :func:`pipeline.cleanup.repeats`). The first-answer-resolved
  rate is ``1 - reopened / first_answers``; an answer is reopened at most once, counted under
  the version that gave it;
- ``approvals`` requested, then approved as asked, ``edited`` (approved with other
  arguments), denied or expired;
- ``operator_replies``: messages operators wrote;
- ``dead_letters``: events of the tenant the agent gave up on (refused at once, or its
  handler failed on its last attempt), per 1,000 turns on the dashboard.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from prometheus_client import CollectorRegistry, Counter

from pipeline.cleanup import APPROVAL_OUTCOMES, HANDOFF_REQUESTERS, REOPENED_BY, repeats, within
from pipeline.config import Settings
from pipeline.errors import EventTypeError, RejectEvent
from pipeline.events.model import Event, now_millis
from pipeline.runtime.context import Context
from pipeline.services.agent.conversation import Conversation

Handler = Callable[[Event, Context], Awaitable[None]]


class CleanupMetrics:
    """The counters, labelled by service, tenant and agent version."""

    def __init__(self, registry: CollectorRegistry, service: str, settings: Settings) -> None:
        self.service = service
        self.version = settings.agent.version_label()
        self.window_millis = int(settings.agent.cleanup_window_seconds * 1000)
        self.max_retries = settings.max_retries
        labels = ["service", "tenant", "agent_version"]

        def counter(name: str, text: str, *extra: str) -> Counter:
            return Counter(name, text, [*labels, *extra], registry=registry)

        self._conversations = counter(
            "pipeline_cleanup_conversations_total", "Conversations the agent started."
        )
        self._turns = counter("pipeline_cleanup_turns_total", "User messages the agent took.")
        self._handoffs = counter(
            "pipeline_cleanup_handoffs_total",
            "Conversations handed to a person, by who or what asked.",
            "requested_by",
        )
        self._answers = counter(
            "pipeline_cleanup_first_answers_total", "Answers the agent gave to a user's turn."
        )
        self._reopened = counter(
            "pipeline_cleanup_first_answers_reopened_total",
            "Answers followed within the cleanup window by a handoff, an operator's reply "
            "or the same question again, by which came first.",
            "reason",
        )
        self._approvals = counter(
            "pipeline_cleanup_approvals_total",
            "Approvals requested, and how they ended (approved, edited, denied, expired).",
            "outcome",
        )
        self._operator_replies = counter(
            "pipeline_cleanup_operator_replies_total", "Messages operators wrote to users."
        )
        self._dead_letters = counter(
            "pipeline_cleanup_dead_letters_total", "Events of the tenant the agent gave up on."
        )
        self._known: set[tuple[str, str, str]] = set()

    def _of(self, tenant: str | None) -> tuple[str, str, str]:
        labels = (self.service, tenant or "", self.version)
        if labels not in self._known:
            self._known.add(labels)
            # Every series of a tenant from its first event on, at 0: a rate or a ratio
            # has both of its sides as soon as the tenant is seen.
            for metric in (
                self._conversations,
                self._turns,
                self._answers,
                self._operator_replies,
                self._dead_letters,
            ):
                metric.labels(*labels)
            for requester in HANDOFF_REQUESTERS:
                self._handoffs.labels(*labels, requester)
            for reason in REOPENED_BY:
                self._reopened.labels(*labels, reason)
            for outcome in APPROVAL_OUTCOMES:
                self._approvals.labels(*labels, outcome)
        return labels

    # ---------------------------------------------------------------- the signals

    def conversation(self, tenant: str | None) -> None:
        self._conversations.labels(*self._of(tenant)).inc()

    def turn(self, conversation: Conversation, text: str) -> None:
        """A user's message the agent takes: a repeat of the last answered question
        reopens that answer (another question leaves it watched until it is answered)."""
        self._turns.labels(*self._of(conversation.tenant)).inc()
        last = conversation.last_answer
        if last is not None and repeats(str(last.get("question") or ""), text):
            self._reopen(conversation, "repeat_question")

    def answered(self, conversation: Conversation, question: str | None) -> None:
        """The agent answered a user's turn; watched for the cleanup window."""
        self._answers.labels(*self._of(conversation.tenant)).inc()
        conversation.last_answer = {
            "at": now_millis(),
            "question": (question or "")[:500],
            "version": self.version,
        }

    def handed_off(self, conversation: Conversation, requested_by: str) -> None:
        self._handoffs.labels(*self._of(conversation.tenant), requested_by).inc()
        self._reopen(conversation, "handoff")

    def operator_replied(self, conversation: Conversation) -> None:
        self._operator_replies.labels(*self._of(conversation.tenant)).inc()
        self._reopen(conversation, "operator_reply")

    def approval(self, tenant: str | None, outcome: str) -> None:
        self._approvals.labels(*self._of(tenant), outcome).inc()

    def _reopen(self, conversation: Conversation, reason: str) -> None:
        last, conversation.last_answer = conversation.last_answer, None
        if last is not None and within(last, now_millis(), self.window_millis):
            version = str(last.get("version") or self.version)
            self._of(conversation.tenant)
            self._reopened.labels(self.service, conversation.tenant or "", version, reason).inc()

    # ---------------------------------------------------------------- dead letters

    def counting_dead_letters(self, handler: Handler) -> Handler:
        """``handler``, its events counted when the runtime dead-letters them: refused
        at once (RejectEvent, an undeclared emit) or failed on the last attempt."""

        async def handle(event: Event, ctx: Context) -> None:
            try:
                await handler(event, ctx)
            except (RejectEvent, EventTypeError):
                self._dead_letters.labels(*self._of(event.metadata.tenant_id)).inc()
                raise
            except Exception:
                if ctx.attempt > self.max_retries:
                    self._dead_letters.labels(*self._of(event.metadata.tenant_id)).inc()
                raise

        handle.__name__ = getattr(handler, "__name__", "handler")
        handle.__doc__ = handler.__doc__
        return handle
