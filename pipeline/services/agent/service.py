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
    tool_outcome_decided -> a call whose outcome was unknown, marked done or failed: a
                         new turn tells the model, and the user is answered
    (each operator event, last: operator_action_handled, accepted or ignored)

This module holds the conversation's own handlers (the first four) and builds the service.
The operators' handlers are in :mod:`.operators`; a turn's next step in :mod:`.turns`, the
call to the model in :mod:`.model_call` (the request fitted to the model's context in
:mod:`.context_budget`, the answer previewed while it is written in :mod:`.preview`);
asking for an approval and handing over in :mod:`.operator_steps` (their rules in
:mod:`.handoff` and :mod:`pipeline.toolbox.approvals`);
what the user is told, and the follow-up, in :mod:`.replies`; reading and writing the
conversation in :mod:`.state`.

Each handler reads the conversation from the store, emits its events and writes the new
state to the changelog last, so state, events and the offset commit together.

A conversation belongs to the tenant of its first event. An event of another tenant is
dead-lettered at once with the reason (:class:`RejectEvent`), before anything is read
into a turn: it never changes the conversation's reply address or history, and never
gets an answer drawn from it. Operator events (operator_message, handoff_released,
approval_decided, tool_outcome_decided) never start a conversation: one naming a
conversation the agent does not have is dead-lettered too.
"""

from __future__ import annotations

import json
import logging

from prometheus_client import CollectorRegistry

from pipeline.channels.tenancy import ChannelOwners
from pipeline.config import Settings
from pipeline.events.model import Event, to_millis
from pipeline.journal import Journal
from pipeline.llm import LLMProvider, create_provider
from pipeline.runtime.context import Context
from pipeline.runtime.publisher import Publisher
from pipeline.runtime.service import Service
from pipeline.services.agent import handoff
from pipeline.services.agent.context_budget import SUMMARIZED, bounded_result
from pipeline.services.agent.conversation import Step, Turn
from pipeline.services.agent.metrics import AgentMetrics
from pipeline.services.agent.model_call import ModelCall, closes, journals_model_calls
from pipeline.services.agent.operator_steps import Approvals, Handoffs
from pipeline.services.agent.operators import OperatorHandlers, fired_by
from pipeline.services.agent.preview import DELTA, PreviewMetrics, Previews
from pipeline.services.agent.replies import FOLLOW_UP, Replies
from pipeline.services.agent.state import AgentState
from pipeline.services.agent.turns import LLM_DOWN, TOO_DEEP, Turns
from pipeline.state import ChangelogStore
from pipeline.toolbox import approvals
from pipeline.toolbox.tool_offer import CatalogOffer, ToolOffer

# LLM_DOWN and TOO_DEEP lived here before turns.py; callers import them here.
__all__ = ["LLM_DOWN", "TOO_DEEP", "Agent", "assemble", "build"]

log = logging.getLogger(__name__)

# Events the agent handles at once unless PIPELINE_MAX_IN_FLIGHT says otherwise.
AGENT_MAX_IN_FLIGHT = 1024


class Agent(OperatorHandlers):
    """The agent's handlers around one provider and one state store."""

    def __init__(
        self,
        settings: Settings,
        provider: LLMProvider,
        store: ChangelogStore,
        metrics: AgentMetrics,
        tools: ToolOffer,
        journal: Journal | None = None,
        previews: Previews | None = None,
    ) -> None:
        self.settings = settings
        self.config = settings.agent
        self.provider = provider
        self.store = store
        self.metrics = metrics
        self.state = AgentState(store, metrics, ChannelOwners.from_settings(settings.gateway))
        self.model = ModelCall(
            settings, provider, tools, journal=journal, metrics=metrics, previews=previews
        )
        self.replies = Replies(self.config, metrics)
        self.approvals = Approvals(self.config, metrics, self.state, self.replies)
        self.handoffs = Handoffs(self.config, metrics, self.replies, self.approvals)
        self.turns = Turns(
            self.config, metrics, self.model, self.replies, self.approvals, self.handoffs
        )

    @property
    def tools(self) -> ToolOffer:
        """What the model is offered: the advertised tool catalog."""
        return self.model.tools

    @tools.setter
    def tools(self, offer: ToolOffer) -> None:
        self.model.tools = offer

    # ------------------------------------------------------------------ handlers

    async def on_message(self, event: Event, ctx: Context) -> None:
        conversation = self.state.load(ctx)
        self.replies.cancel_follow_up(conversation, ctx)
        conversation.reply_to = dict(event["reply_to"])
        started = not conversation.seen and not conversation.history
        new = conversation.mark_seen(str(event.id))  # a repeat after a crash is not kept twice
        text, at = event["text"], event.metadata.occurred_at
        if started:
            self.metrics.cleanup.conversation(conversation.tenant)
        if conversation.handoff is not None:
            # A person has the conversation: the message reaches them on its topic.
            if new:
                handoff.record(conversation, "user", text, at, self.config.history_window)
            self.metrics.ignored["handed_off"].inc()
            self.state.save(ctx, conversation)
            return
        if new:
            self.metrics.cleanup.turn(conversation, text)
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
            self.handoffs.hand_off(conversation, "user", reason, ctx, turn=turn, user_text=text)
        else:
            await self.turns.advance(conversation, turn, ctx)
        self.state.save(ctx, conversation)

    async def on_tool_result(self, event: Event, ctx: Context) -> None:
        conversation = self.state.load(ctx)
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
        content = bounded_result(_result_content(event), self.config.tool_result_max_tokens)
        turn.steps.append(Step(result_of=call_id, tool=event["tool"], content=content))
        if not turn.pending:
            await self.turns.advance(conversation, turn, ctx)
        self.state.save(ctx, conversation)

    async def on_timer_fired(self, event: Event, ctx: Context) -> None:
        if event["purpose"] == approvals.EXPIRY:
            await self.expire_approval(event, ctx)
            return
        if event["purpose"] != FOLLOW_UP:
            self.metrics.ignored["other_timer"].inc()
            log.info("ignoring timer %s with purpose %r", event["timer_id"], event["purpose"])
            return
        conversation = self.state.load(ctx)
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
        self.replies.proactive(conversation, self.config.follow_up_text, event, ctx)
        self.state.save(ctx, conversation)

    async def on_context_updated(self, event: Event, ctx: Context) -> None:
        conversation = self.state.load(ctx)
        facts = dict(event["facts"])
        wanted = facts.pop(self.config.handoff_fact, "").strip()
        conversation.facts.update(facts)
        message = event.get("proactive_message")
        if message:
            if conversation.handoff is None:
                self.replies.proactive(conversation, message, event, ctx)
            else:
                self.metrics.ignored["handed_off"].inc()
        if wanted:
            reason = f"webhook rule of {event['source']}: {wanted}"
            self.handoffs.hand_off(conversation, "webhook", reason, ctx)
        self.state.save(ctx, conversation)


def _result_content(event: Event) -> str:
    """What the model reads as the tool's answer: its JSON result, or the failure."""
    if event["status"] == "ok":
        return str(event.get("result_json") or "null")
    return json.dumps({"status": event["status"], "error": event.get("error") or "no reason given"})


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
        # Its handlers mostly wait on the model: a second's answer at hundreds of turns a
        # second keeps hundreds of them waiting at once.
        max_in_flight=AGENT_MAX_IN_FLIGHT,
        emits=[
            "tool_called",
            "response_ready",
            "timer_requested",
            "handoff_requested",
            "approval_requested",
            SUMMARIZED,
            # Written through the runtime's durable publisher, not with the outputs.
            DELTA,
            "operator_action_handled",
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
        service.background(closes(provider))
    if tools is None:
        catalog = CatalogOffer(settings)
        service.background(catalog.follow)
        tools = catalog
    journal = None
    if journals_model_calls(settings, provider):
        journal = Journal(service, settings.agent.journal_topic)
    metrics = AgentMetrics(service.registry, service.name, settings)

    def durable() -> Publisher | None:
        return None if service.running is None else service.running.durable

    previews = Previews(settings.agent, durable, PreviewMetrics(service.registry, service.name))
    agent = Agent(settings, provider, store, metrics, tools, journal, previews)
    counted = metrics.cleanup.counting_dead_letters  # dead letters per tenant and version
    service.handler("message_received", name="on_message")(counted(agent.on_message))
    service.handler("tool_result", name="on_tool_result")(counted(agent.on_tool_result))
    service.handler("timer_fired", name="on_timer_fired")(counted(agent.on_timer_fired))
    service.handler("context_updated", name="on_context_updated")(counted(agent.on_context_updated))
    service.handler("operator_message", name="on_operator_message")(
        counted(agent.on_operator_message)
    )
    service.handler("handoff_released", name="on_handoff_released")(
        counted(agent.on_handoff_released)
    )
    service.handler("approval_decided", name="on_approval_decided")(
        counted(agent.on_approval_decided)
    )
    service.handler("tool_outcome_decided", name="on_tool_outcome_decided")(
        counted(agent.on_tool_outcome_decided)
    )
    service.on_assign(agent.state.recount)
    service.on_revoke(agent.state.recount)
    return service, agent
