"""The agent: the single writer of conversation state, and where each turn is decided.

Handlers, one per topic, all keyed by conversation (so one conversation's events from
every topic are handled one at a time, on the instance owning its partition)::

    message_received  -> cancel a pending follow-up; remember; ask the model
                         -> tool_called (wait for results), approval_requested (wait
                         for an operator) or response_ready; handoff_requested when
                         the user asks for a person; while handed off: only logged
    tool_result       -> give the model the result -> the next tool_called or response_ready
    timer_fired       -> the follow-up, if the user has not written since and no person
                         has the conversation; an approval's expiry
    context_updated   -> merge facts; send its proactive message, if any; a handoff
    operator_message  -> response_ready with the operator's text, to the user's address
    handoff_released  -> back to the agent, the handoff's log in the model's context
    approval_decided  -> tool_called (approved, arguments maybe edited), or the model is
                         told it was denied

The operators' handlers and the handoff and approval steps are in :mod:`.operators`; their
rules in :mod:`.handoff` and :mod:`.approvals`.

Each handler reads the conversation from the store, emits its events and writes the new
state to the changelog last, so state, events and the offset commit together.

A conversation belongs to the tenant of its first event. An event of another tenant is
dead-lettered at once with the reason (:class:`RejectEvent`), before anything is read
into a turn: it never changes the conversation's reply address or history, and never
gets an answer drawn from it. Operator events (operator_message, handoff_released,
approval_decided) never start a conversation: one naming a conversation the agent does
not have is dead-lettered too.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from opentelemetry.trace import SpanKind
from prometheus_client import CollectorRegistry

from pipeline.config import Settings
from pipeline.errors import RejectEvent
from pipeline.events.model import Event, from_millis, to_millis, utc_now
from pipeline.llm import ChatRequest, Completion, LLMError, LLMProvider, create_provider
from pipeline.llm.base import ToolCall
from pipeline.runtime.context import Context
from pipeline.runtime.publisher import Publisher
from pipeline.runtime.service import Background, Service
from pipeline.runtime.spans import span
from pipeline.services.agent import handoff
from pipeline.services.agent.conversation import Conversation, Step, Turn
from pipeline.services.agent.metrics import AgentMetrics, OpenWork
from pipeline.services.agent.operators import OperatorSteps, fired_by
from pipeline.state import ChangelogStore
from pipeline.toolbox import approvals
from pipeline.toolbox.tool_offer import CatalogOffer, ToolOffer

log = logging.getLogger(__name__)

FOLLOW_UP = "follow_up"
TOO_DEEP = (
    "Sorry, I could not finish that: it needed more tool calls than I am allowed per "
    "message. Could you break the question into smaller steps?"
)
LLM_DOWN = "Sorry, I cannot answer right now. Please try again in a moment."
FAILED = {"too_deep", "llm_failed"}


class Agent(OperatorSteps):
    """The agent's handlers around one provider and one state store."""

    def __init__(
        self,
        settings: Settings,
        provider: LLMProvider,
        store: ChangelogStore,
        metrics: AgentMetrics,
        tools: ToolOffer,
    ) -> None:
        self.settings = settings
        self.config = settings.agent
        self.provider = provider
        self.store = store
        self.metrics = metrics
        self.tools = tools  # what the model is offered: the advertised tool catalog
        self.open_work = OpenWork(metrics)

    # ------------------------------------------------------------------ handlers

    async def on_message(self, event: Event, ctx: Context) -> None:
        conversation = self._load(ctx)
        self._cancel_follow_up(conversation, ctx)
        conversation.reply_to = dict(event["reply_to"])
        new = conversation.mark_seen(str(event.id))  # a repeat after a crash is not kept twice
        text, at = event["text"], event.metadata.occurred_at
        if conversation.handoff is not None:
            # A person has the conversation: the message reaches them on its topic.
            if new:
                handoff.record(conversation, "user", text, at, self.config.history_window)
            self.metrics.ignored["handed_off"].inc()
            self._save(ctx, conversation)
            return
        if new:
            conversation.remember("user", text, at, self.config.history_window)
        turn = Turn(
            correlation_id=str(event.metadata.correlation_id),
            reply_to=conversation.reply_to,
            in_reply_to=event.get("external_id"),
            ingress_at=to_millis(event.metadata.occurred_at),
        )
        phrase = handoff.asked_for_person(
            text, handoff.phrases_for(self.config, conversation.tenant)
        )
        if phrase is not None:
            reason = f"the user asked for a person ({phrase!r})"
            self._hand_off(conversation, "user", reason, ctx, turn=turn, user_text=text)
        else:
            await self._advance(conversation, turn, ctx)
        self._save(ctx, conversation)

    async def on_tool_result(self, event: Event, ctx: Context) -> None:
        conversation = self._load(ctx)
        call_id = event["call_id"]
        turn = conversation.turn_waiting_for(call_id)
        if turn is None:
            self.metrics.ignored["unknown_call"].inc()
            log.info(
                "ignoring tool_result %s for %s: call %r is not pending",
                event.id,
                event.conversation_id,
                call_id,
            )
            return
        turn.pending.remove(call_id)
        turn.steps.append(
            Step(result_of=call_id, tool=event["tool"], content=_result_content(event))
        )
        if not turn.pending:
            await self._advance(conversation, turn, ctx)
        self._save(ctx, conversation)

    async def on_timer_fired(self, event: Event, ctx: Context) -> None:
        if event["purpose"] == approvals.EXPIRY:
            await self._expire(event, ctx)
            return
        if event["purpose"] != FOLLOW_UP:
            self.metrics.ignored["other_timer"].inc()
            log.info("ignoring timer %s with purpose %r", event["timer_id"], event["purpose"])
            return
        conversation = self._load(ctx)
        if conversation.handoff is not None:
            self.metrics.ignored["handed_off"].inc()
            log.info("no follow-up for %s: a person has it", event.conversation_id)
            return
        follow_up = conversation.follow_up
        if (
            follow_up is None
            or follow_up["timer_id"] != event["timer_id"]
            or to_millis(event["due_at"]) < follow_up["due_at"]
            or not fired_by(event, follow_up.get("request_id"))
        ):
            self.metrics.ignored["stale_timer"].inc()
            log.info("follow-up %s is no longer wanted", event["timer_id"])
            return
        conversation.follow_up = None
        self._proactive(conversation, self.config.follow_up_text, event, ctx)
        self._save(ctx, conversation)

    async def on_context_updated(self, event: Event, ctx: Context) -> None:
        conversation = self._load(ctx)
        facts = dict(event["facts"])
        wanted = facts.pop(self.config.handoff_fact, "").strip()
        conversation.facts.update(facts)
        message = event.get("proactive_message")
        if message:
            if conversation.handoff is None:
                self._proactive(conversation, message, event, ctx)
            else:
                self.metrics.ignored["handed_off"].inc()
        if wanted:
            reason = f"webhook rule of {event['source']}: {wanted}"
            self._hand_off(conversation, "webhook", reason, ctx)
        self._save(ctx, conversation)

    # ------------------------------------------------------------------ turns

    async def _advance(self, conversation: Conversation, turn: Turn, ctx: Context) -> None:
        """Ask the model, then either call tools (the turn waits) or answer."""
        completion = await self._complete(conversation, turn, ctx)
        if completion is None:
            self._answer(conversation, turn, LLM_DOWN, "llm_failed", ctx)
            return
        calls = completion.tool_calls
        if not calls:
            self._answer(conversation, turn, completion.text or "", "answered", ctx)
            return
        escalate = next((c for c in calls if c.name == handoff.ESCALATE.name), None)
        if escalate is not None and self.config.escalate_tool:
            reason = str(escalate.arguments.get("reason") or completion.text or "not given")
            self._hand_off(conversation, "model", reason, ctx, turn=turn)
            return
        if turn.depth + len(calls) > self.config.max_tool_depth:
            log.info(
                "turn %s of %s wants tool call %d, beyond max_tool_depth %d",
                turn.correlation_id,
                ctx.event.conversation_id,
                turn.depth + len(calls),
                self.config.max_tool_depth,
            )
            self._answer(conversation, turn, TOO_DEEP, "too_deep", ctx)
            return
        taken = {c for t in conversation.turns.values() for c in t.pending}
        issued: list[ToolCall] = []
        waiting = False
        for index, call in enumerate(calls):
            call_id = call.id if call.id and call.id not in taken else _call_id(ctx, index)
            taken.add(call_id)
            issued.append(ToolCall(call_id, call.name, call.arguments))
            if approvals.needs_approval(self.config, conversation.tenant, call.name):
                self._ask_approval(conversation, turn, call_id, call, completion.text, ctx)
                waiting = True
            else:
                self._call_tool(call_id, call.name, call.arguments, turn.depth, ctx)
            turn.depth += 1
        turn.steps.append(Step(calls=issued))
        turn.pending = [c.id for c in issued]
        conversation.turns[turn.correlation_id] = turn
        while len(conversation.turns) > self.config.max_open_turns:
            oldest = next(iter(conversation.turns))
            log.warning("dropping unanswered turn %s: too many open turns", oldest)
            del conversation.turns[oldest]
        if waiting and self.config.approval_waiting_text:
            self._say(conversation, turn, self.config.approval_waiting_text, ctx)

    def _call_tool(
        self, call_id: str, tool: str, arguments: Mapping[str, Any], depth: int, ctx: Context
    ) -> None:
        ctx.emit(
            "tool_called",
            {
                "call_id": call_id,
                "tool": tool,
                "arguments_json": json.dumps(dict(arguments)),
                "timeout_ms": int(self.config.tool_timeout_seconds * 1000),
                "depth": depth,
            },
        )
        self.metrics.tool_calls.labels(self.metrics.service, tool).inc()

    async def _complete(
        self, conversation: Conversation, turn: Turn, ctx: Context
    ) -> Completion | None:
        system = self.settings.llm.system_prompt
        if conversation.context_note:
            system = f"{system}\n\n{conversation.context_note}".strip()
        tools = await self.tools.tools_for(ctx.event.metadata.tenant_id)
        if self.config.escalate_tool:
            escalate = handoff.ESCALATE
            tools = (*(t for t in tools if t.name != escalate.name), escalate)
        request = ChatRequest(
            messages=conversation.messages(turn),
            system=system,
            facts=conversation.facts,
            tools=tools,
        )
        provider = self.provider
        try:
            with span(f"chat {provider.model}", _llm_attributes(provider), kind=SpanKind.CLIENT):
                return await provider.complete(request)
        except LLMError as exc:
            # The provider has retried already (PIPELINE_LLM__MAX_RETRIES); a handler retry
            # would multiply those calls, so the user gets the apology at once.
            log.error("giving up on the model for %s: %s", ctx.event.conversation_id, exc)
            return None

    def _answer(
        self, conversation: Conversation, turn: Turn, text: str, outcome: str, ctx: Context
    ) -> None:
        reply_to = turn.reply_to or conversation.reply_to
        conversation.turns.pop(turn.correlation_id, None)
        if outcome in FAILED:
            conversation.failed_turns += 1
            limit = self.config.handoff_after_failed_turns
            if limit is not None and conversation.failed_turns >= limit:
                self.metrics.turns[outcome].inc()
                reason = f"{conversation.failed_turns} failed turns in a row (last: {outcome})"
                self._hand_off(conversation, "failed_turns", reason, ctx, turn=turn)
                return
        else:
            conversation.failed_turns = 0
        conversation.context_note = None  # the model saw the handoff's note in this turn
        self.metrics.turns[outcome].inc()
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
                },
            )
            conversation.follow_up = {
                "timer_id": timer_id,
                "due_at": to_millis(due_at),
                "request_id": str(request.id),
            }

    # ------------------------------------------------------------------ telling the user

    def _say(self, conversation: Conversation, turn: Turn | None, text: str, ctx: Context) -> None:
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
            },
        )
        conversation.remember("assistant", text, utc_now(), self.config.history_window)

    def _cancel_follow_up(self, conversation: Conversation, ctx: Context) -> None:
        if conversation.follow_up is not None:
            self._cancel_timer(conversation.follow_up["timer_id"], FOLLOW_UP, ctx)
            conversation.follow_up = None

    def _cancel_timer(self, timer_id: str, purpose: str, ctx: Context) -> None:
        ctx.emit(
            "timer_requested",
            {
                "timer_id": timer_id,
                "action": "cancel",
                "due_at": None,
                "purpose": purpose,
                "payload_json": None,
            },
        )

    def _proactive(self, conversation: Conversation, text: str, event: Event, ctx: Context) -> None:
        if conversation.reply_to is None:
            self.metrics.ignored["no_address"].inc()
            log.info(
                "no reply address for %s yet; proactive message dropped", event.conversation_id
            )
            return
        ctx.emit("response_ready", conversation.proactive(text, event.metadata.occurred_at))
        conversation.remember("assistant", text, utc_now(), self.config.history_window)

    # ------------------------------------------------------------------ state

    def _load(self, ctx: Context, *, existing: bool = False) -> Conversation:
        """The event's conversation; RejectEvent when it belongs to another tenant, or
        (``existing``) when the agent does not have it."""
        event = ctx.event
        stored = self.store.get(ctx, event.conversation_id)
        if existing and stored is None:
            raise RejectEvent(
                f"{event.type} names conversation {event.conversation_id!r}, which the agent "
                "does not have; refused"
            )
        conversation = Conversation.from_json(stored)
        tenant = event.metadata.tenant_id
        if conversation.tenant is None:
            conversation.tenant = tenant
        elif conversation.tenant != tenant:
            self.metrics.refused_tenant.inc()
            log.warning(
                "refusing %s %s of tenant %r: conversation %r belongs to tenant %r",
                event.type,
                event.id,
                tenant,
                event.conversation_id,
                conversation.tenant,
            )
            raise RejectEvent(
                f"conversation {event.conversation_id!r} belongs to tenant "
                f"{conversation.tenant!r}, not to the event's tenant {tenant!r}; refused"
            )
        return conversation

    def _save(self, ctx: Context, conversation: Conversation) -> None:
        state = conversation.to_json()
        self.store.put(ctx, ctx.event.conversation_id, state)
        self.open_work.track(ctx.event.conversation_id, state)

    async def recount(self, _: list[tuple[str, int]]) -> None:
        """Recount open handoffs and approvals after a rebalance (after the restore)."""
        self.open_work.recount(
            (key, value) for p in self.store.partitions for key, value in self.store.items(p)
        )


def _result_content(event: Event) -> str:
    """What the model reads as the tool's answer: its JSON result, or the failure."""
    if event["status"] == "ok":
        return str(event.get("result_json") or "null")
    return json.dumps({"status": event["status"], "error": event.get("error") or "no reason given"})


def _llm_attributes(provider: LLMProvider) -> dict[str, str]:
    """The GenAI semantic-convention attributes of a chat call's span."""
    return {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": provider.name,
        "gen_ai.request.model": provider.model,
    }


def _closes(provider: LLMProvider) -> Background:
    """A background task that only closes the provider (its HTTP client) at shutdown."""

    async def close_at_shutdown(_: Publisher) -> None:
        try:
            await asyncio.Event().wait()
        finally:
            await provider.aclose()

    return close_at_shutdown


def _call_id(ctx: Context, index: int) -> str:
    return "call_" + uuid.uuid5(ctx.event.id, f"tool/{index}").hex[:24]


def build(
    settings: Settings | None = None,
    *,
    provider: LLMProvider | None = None,
    registry: CollectorRegistry | None = None,
    tools: ToolOffer | None = None,
) -> Service:
    """The agent service, with the provider ``settings.llm`` names (or ``provider``)."""
    service, _ = assemble(settings, provider=provider, registry=registry, tools=tools)
    return service


def assemble(
    settings: Settings | None = None,
    *,
    provider: LLMProvider | None = None,
    registry: CollectorRegistry | None = None,
    tools: ToolOffer | None = None,
) -> tuple[Service, Agent]:
    """The agent service and its Agent (whose ``store`` tests and tools may inspect).

    ``tools`` replaces the offer read from the tool catalog topic (tests)."""
    settings = settings or Settings()
    service = Service(
        "agent",
        settings=settings,
        registry=registry,
        assignment_strategy="range",
        emits=[
            "tool_called",
            "response_ready",
            "timer_requested",
            "handoff_requested",
            "approval_requested",
        ],
    )
    store = ChangelogStore(
        settings,
        settings.agent.changelog_topic,
        service=service.name,
        registry=service.registry,
        restore_timeout_seconds=settings.agent.restore_timeout_seconds,
    )
    store.attach(service)
    if provider is None:
        provider = create_provider(settings.llm, registry=service.registry, service=service.name)
        service.background(_closes(provider))
    if tools is None:
        catalog = CatalogOffer(settings)
        service.background(catalog.follow)
        tools = catalog
    agent = Agent(settings, provider, store, AgentMetrics(service.registry, service.name), tools)
    service.handler("message_received", name="on_message")(agent.on_message)
    service.handler("tool_result", name="on_tool_result")(agent.on_tool_result)
    service.handler("timer_fired", name="on_timer_fired")(agent.on_timer_fired)
    service.handler("context_updated", name="on_context_updated")(agent.on_context_updated)
    service.handler("operator_message", name="on_operator_message")(agent.on_operator_message)
    service.handler("handoff_released", name="on_handoff_released")(agent.on_handoff_released)
    service.handler("approval_decided", name="on_approval_decided")(agent.on_approval_decided)
    service.on_assign(agent.recount)
    service.on_revoke(agent.recount)
    return service, agent
