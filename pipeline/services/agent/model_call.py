"""Calling the model: the one place the agent asks its provider for a completion.

:class:`ModelCall` builds the request of a turn (the system prompt with the note a handoff
left, the conversation's messages and facts, the tools offered to the tenant and the
agent's own ``escalate``) and sends it in a client span. A provider that fails after its
own retries (``PIPELINE_LLM__MAX_RETRIES``) gives no completion: the turn apologises
instead of retrying the handler, which would multiply those calls.

With a journal (:mod:`pipeline.journal`; every provider but the deterministic one, by
default), each call is a step of the event being handled: its intent is recorded before
the request and its completion (text, tool calls with their ids, usage) as soon as it
comes, so the event handled again (after a crash, a rebalance, an aborted transaction)
reuses the recorded completion instead of asking (and paying) the model again, and
produces the same outputs. A call in flight when the process died is made again: its
completion was never recorded.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from opentelemetry.trace import SpanKind

from pipeline.config import Settings
from pipeline.journal import DONE, Journal, step_id
from pipeline.llm import ChatRequest, Completion, LLMError, LLMProvider
from pipeline.llm.base import ToolCall
from pipeline.runtime.context import Context
from pipeline.runtime.publisher import Publisher
from pipeline.runtime.service import Background
from pipeline.runtime.spans import span
from pipeline.services.agent import handoff
from pipeline.services.agent.conversation import Conversation, Turn
from pipeline.services.agent.metrics import AgentMetrics
from pipeline.toolbox.tool_offer import ToolOffer

log = logging.getLogger(__name__)

MODEL = "model"  # the journal's kind of step for a model call


class ModelCall:
    """Asks ``provider`` for a turn's next step, offering the tools of ``tools``; with a
    ``journal``, each call recorded (and a recorded one reused)."""

    def __init__(
        self,
        settings: Settings,
        provider: LLMProvider,
        tools: ToolOffer,
        *,
        journal: Journal | None = None,
        metrics: AgentMetrics | None = None,
    ) -> None:
        self.settings = settings
        self.config = settings.agent
        self.provider = provider
        self.tools = tools  # what the model is offered: the advertised tool catalog
        self.journal = journal
        self.metrics = metrics

    async def complete(
        self, conversation: Conversation, turn: Turn, ctx: Context
    ) -> Completion | None:
        """The model's completion of ``turn``, or None when the provider gave up."""
        journal, step = self.journal, None
        if journal is not None:
            known = journal.find(ctx, step_id(ctx.event.id, MODEL))
            if known is not None and known.state == DONE and known.result is not None:
                journal.count(MODEL, "reused")
                return completion_from_json(known.result)
            attempt = 1 if known is None else known.attempt + 1
            step = await journal.intent(ctx, step_id(ctx.event.id, MODEL), MODEL, attempt=attempt)
        completion = await self._ask(conversation, turn, ctx)
        if completion is None:
            return None
        if journal is not None and step is not None:
            await journal.done(ctx, step, completion_to_json(completion))
            journal.count(MODEL, "called" if step.attempt == 1 else "repeated")
        if self.metrics is not None and completion.usage is not None:
            tenant = ctx.event.metadata.tenant_id
            tokens = self.metrics.tenant_tokens
            tokens.labels(self.metrics.service, tenant, "prompt").inc(
                completion.usage.prompt_tokens
            )
            tokens.labels(self.metrics.service, tenant, "completion").inc(
                completion.usage.completion_tokens
            )
        return completion

    async def _ask(self, conversation: Conversation, turn: Turn, ctx: Context) -> Completion | None:
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


def completion_to_json(completion: Completion) -> dict[str, Any]:
    """A completion as the journal records it."""
    value: dict[str, Any] = {
        "text": completion.text,
        "tool_calls": [
            {"id": c.id, "name": c.name, "arguments": dict(c.arguments)}
            for c in completion.tool_calls
        ],
    }
    if completion.usage is not None:
        value["usage"] = {
            "prompt": completion.usage.prompt_tokens,
            "completion": completion.usage.completion_tokens,
        }
    return value


def completion_from_json(value: Mapping[str, Any]) -> Completion:
    """A recorded completion (its usage left out: reusing it costs nothing)."""
    return Completion(
        text=value.get("text"),
        tool_calls=tuple(
            ToolCall(str(c["id"]), str(c["name"]), dict(c.get("arguments") or {}))
            for c in value.get("tool_calls", ())
        ),
    )


def journals_model_calls(settings: Settings, provider: LLMProvider) -> bool:
    """Whether the agent records its model calls (``agent.journal_model_calls``)."""
    mode = settings.agent.journal_model_calls
    if mode == "auto":
        return not getattr(provider, "deterministic", False)
    return mode == "always"


def _llm_attributes(provider: LLMProvider) -> dict[str, str]:
    """The GenAI semantic-convention attributes of a chat call's span."""
    return {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": provider.name,
        "gen_ai.request.model": provider.model,
    }


def closes(provider: LLMProvider) -> Background:
    """A background task that only closes the provider (its HTTP client) at shutdown."""

    async def close_at_shutdown(_: Publisher) -> None:
        try:
            await asyncio.Event().wait()
        finally:
            await provider.aclose()

    return close_at_shutdown
