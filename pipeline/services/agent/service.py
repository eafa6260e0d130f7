"""The agent: the single writer of conversation state, and where each turn is decided.

Handlers, one per topic, all keyed by conversation (so one conversation's events from
every topic are handled one at a time, on the instance owning its partition)::

    message_received -> cancel a pending follow-up; remember; ask the model
                        -> tool_called (wait for results) or response_ready
    tool_result      -> give the model the result -> the next tool_called or response_ready
    timer_fired      -> the follow-up, if the user has not written since
    context_updated  -> merge facts; send its proactive message, if any

Each handler reads the conversation from the store, emits its events and writes the new
state to the changelog last, so state, events and the offset commit together.

A conversation belongs to the tenant of its first event. An event of another tenant is
dead-lettered at once with the reason (:class:`RejectEvent`), before anything is read
into a turn: it never changes the conversation's reply address or history, and never
gets an answer drawn from it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from datetime import timedelta

from opentelemetry.trace import SpanKind
from prometheus_client import CollectorRegistry, Counter

from pipeline.config import Settings
from pipeline.errors import RejectEvent
from pipeline.events.model import Event, from_millis, to_millis, utc_now
from pipeline.llm import ChatRequest, Completion, LLMError, LLMProvider, create_provider
from pipeline.llm.base import ToolCall
from pipeline.runtime.context import Context
from pipeline.runtime.publisher import Publisher
from pipeline.runtime.service import Background, Service
from pipeline.runtime.spans import span
from pipeline.services.agent.conversation import Conversation, Step, Turn
from pipeline.services.agent.tool_offer import CatalogOffer, ToolOffer
from pipeline.state import ChangelogStore

log = logging.getLogger(__name__)

FOLLOW_UP = "follow_up"
TOO_DEEP = (
    "Sorry, I could not finish that: it needed more tool calls than I am allowed per "
    "message. Could you break the question into smaller steps?"
)
LLM_DOWN = "Sorry, I cannot answer right now. Please try again in a moment."


class AgentMetrics:
    def __init__(self, registry: CollectorRegistry, service: str) -> None:
        turns = Counter(
            "pipeline_agent_turns_total",
            "Turns the agent finished, by outcome (answered, too_deep, llm_failed).",
            ["service", "outcome"],
            registry=registry,
        )
        self.turns = {o: turns.labels(service, o) for o in ("answered", "too_deep", "llm_failed")}
        self.tool_calls = Counter(
            "pipeline_agent_tool_calls_total",
            "Tool calls the agent asked for, by tool.",
            ["service", "tool"],
            registry=registry,
        )
        ignored = Counter(
            "pipeline_agent_ignored_events_total",
            "Events the agent had nothing to do for, by reason.",
            ["service", "reason"],
            registry=registry,
        )
        self.ignored = {
            r: ignored.labels(service, r)
            for r in ("unknown_call", "stale_timer", "no_address", "other_timer")
        }
        self.refused_tenant = Counter(
            "pipeline_agent_tenant_mismatch_total",
            "Events dead-lettered because their tenant is not the conversation's.",
            ["service"],
            registry=registry,
        ).labels(service)
        self.service = service


class Agent:
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

    # ------------------------------------------------------------------ handlers

    async def on_message(self, event: Event, ctx: Context) -> None:
        conversation = self._load(ctx)
        if conversation.follow_up is not None:
            ctx.emit(
                "timer_requested",
                {
                    "timer_id": conversation.follow_up["timer_id"],
                    "action": "cancel",
                    "due_at": None,
                    "purpose": FOLLOW_UP,
                    "payload_json": None,
                },
            )
            conversation.follow_up = None
        conversation.reply_to = dict(event["reply_to"])
        if conversation.mark_seen(str(event.id)):  # a repeat after a crash is not remembered twice
            conversation.remember(
                "user", event["text"], event.metadata.occurred_at, self.config.history_window
            )
        turn = Turn(
            correlation_id=str(event.metadata.correlation_id),
            reply_to=conversation.reply_to,
            in_reply_to=event.get("external_id"),
            ingress_at=to_millis(event.metadata.occurred_at),
        )
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
        if event["purpose"] != FOLLOW_UP:
            self.metrics.ignored["other_timer"].inc()
            log.info("ignoring timer %s with purpose %r", event["timer_id"], event["purpose"])
            return
        conversation = self._load(ctx)
        follow_up = conversation.follow_up
        if (
            follow_up is None
            or follow_up["timer_id"] != event["timer_id"]
            or to_millis(event["due_at"]) < follow_up["due_at"]
            or not _fired_by(event, follow_up.get("request_id"))
        ):
            self.metrics.ignored["stale_timer"].inc()
            log.info("follow-up %s is no longer wanted", event["timer_id"])
            return
        conversation.follow_up = None
        self._proactive(conversation, self.config.follow_up_text, event, ctx)
        self._save(ctx, conversation)

    async def on_context_updated(self, event: Event, ctx: Context) -> None:
        conversation = self._load(ctx)
        conversation.facts.update(event["facts"])
        message = event.get("proactive_message")
        if message:
            self._proactive(conversation, message, event, ctx)
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
        for index, call in enumerate(calls):
            call_id = call.id if call.id and call.id not in taken else _call_id(ctx, index)
            taken.add(call_id)
            issued.append(ToolCall(call_id, call.name, call.arguments))
            ctx.emit(
                "tool_called",
                {
                    "call_id": call_id,
                    "tool": call.name,
                    "arguments_json": json.dumps(dict(call.arguments)),
                    "timeout_ms": int(self.config.tool_timeout_seconds * 1000),
                    "depth": turn.depth,
                },
            )
            turn.depth += 1
            self.metrics.tool_calls.labels(self.metrics.service, call.name).inc()
        turn.steps.append(Step(calls=issued))
        turn.pending = [c.id for c in issued]
        conversation.turns[turn.correlation_id] = turn
        while len(conversation.turns) > self.config.max_open_turns:
            oldest = next(iter(conversation.turns))
            log.warning("dropping unanswered turn %s: too many open turns", oldest)
            del conversation.turns[oldest]

    async def _complete(
        self, conversation: Conversation, turn: Turn, ctx: Context
    ) -> Completion | None:
        request = ChatRequest(
            messages=conversation.messages(turn),
            system=self.settings.llm.system_prompt,
            facts=conversation.facts,
            tools=await self.tools.tools_for(ctx.event.metadata.tenant_id),
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

    def _proactive(self, conversation: Conversation, text: str, event: Event, ctx: Context) -> None:
        if conversation.reply_to is None:
            self.metrics.ignored["no_address"].inc()
            log.info(
                "no reply address for %s yet; proactive message dropped", event.conversation_id
            )
            return
        ctx.emit(
            "response_ready",
            {
                "reply_to": conversation.reply_to,
                "text": text,
                "in_reply_to": None,
                "proactive": True,
                "ingress_at": event.metadata.occurred_at,
            },
        )
        conversation.remember("assistant", text, utc_now(), self.config.history_window)

    # ------------------------------------------------------------------ state

    def _load(self, ctx: Context) -> Conversation:
        """The event's conversation; RejectEvent when it belongs to another tenant."""
        event = ctx.event
        conversation = Conversation.from_json(self.store.get(ctx, event.conversation_id))
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
        self.store.put(ctx, ctx.event.conversation_id, conversation.to_json())


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
        emits=["tool_called", "response_ready", "timer_requested"],
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
    return service, agent


def _fired_by(event: Event, request_id: str | None) -> bool:
    """Whether a timer_fired came from the schedule request the state remembers.

    Two schedules can share a due time to the millisecond; the request id cannot.
    """
    causation = event.metadata.causation_id
    return request_id is None or causation is None or str(causation) == request_id
