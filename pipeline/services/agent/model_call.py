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

Before it asks, the request is fitted to the model's context (:mod:`.context_budget`):
the history's oldest messages are folded into the conversation's summary when they do not
fit, and the fold is reported (``history_summarized``). When the reply goes to a channel
that previews and the provider streams, the answer is written to a preview while the
model writes it (:mod:`.preview`); the completion journaled and answered is the assembled
one, and a completion reused from the journal is not streamed again (its answer replaces
whatever preview an earlier attempt wrote).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Mapping
from typing import Any

from opentelemetry.trace import SpanKind

from pipeline.config import Settings
from pipeline.events.model import AGENT_VERSION, from_millis
from pipeline.journal import DONE, Journal, step_id
from pipeline.llm import ChatRequest, Completion, LLMError, LLMProvider
from pipeline.llm.base import ToolCall
from pipeline.llm.streaming import StreamingProvider, streams
from pipeline.runtime.context import Context
from pipeline.runtime.publisher import Publisher
from pipeline.runtime.service import Background
from pipeline.runtime.spans import span
from pipeline.services.agent import handoff
from pipeline.services.agent import summary as summaries
from pipeline.services.agent.context_budget import SUMMARIZED, ContextBudget
from pipeline.services.agent.conversation import Conversation, Turn
from pipeline.services.agent.metrics import AgentMetrics
from pipeline.services.agent.preview import Preview, Previews
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
        previews: Previews | None = None,
    ) -> None:
        self.settings = settings
        self.config = settings.agent
        self.provider = provider
        self.tools = tools  # what the model is offered: the advertised tool catalog
        self.journal = journal
        self.metrics = metrics
        self.budget = ContextBudget(settings.llm, settings.agent)
        self.previews = previews

    def stream_id(self, conversation: Conversation, turn: Turn, ctx: Context) -> uuid.UUID | None:
        """The stream a preview of ``turn``'s answer is written to (the answer replaces
        it), or None when its answers are not previewed."""
        if self.previews is None or not streams(self.provider):
            return None
        return self.previews.stream_of(ctx.event, turn.reply_to or conversation.reply_to)

    async def complete(
        self, conversation: Conversation, turn: Turn, ctx: Context
    ) -> Completion | None:
        """The model's completion of ``turn``, or None when the provider gave up."""
        request = await self._request(conversation, turn, ctx)
        journal, step = self.journal, None
        if journal is not None:
            known = journal.find(ctx, step_id(ctx.event.id, MODEL))
            if known is not None and known.state == DONE and known.result is not None:
                journal.count(MODEL, "reused")
                return completion_from_json(known.result)
            attempt = 1 if known is None else known.attempt + 1
            step = await journal.intent(ctx, step_id(ctx.event.id, MODEL), MODEL, attempt=attempt)
        completion = await self._ask(request, conversation, turn, ctx)
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

    async def _request(self, conversation: Conversation, turn: Turn, ctx: Context) -> ChatRequest:
        """The request of ``turn``, the history first fitted to the model's context (a
        fold reported as ``history_summarized``)."""
        system = self.settings.llm.system_prompt
        if conversation.context_note:
            system = f"{system}\n\n{conversation.context_note}".strip()
        tools = await self.tools.tools_for(ctx.event.metadata.tenant_id)
        if self.config.escalate_tool:
            escalate = handoff.ESCALATE
            tools = (*(t for t in tools if t.name != escalate.name), escalate)
        facts = "".join(f"- {k}: {v}\n" for k, v in conversation.facts.items())
        fold = self.budget.fit(conversation, turn, system + facts, tools)
        if fold is not None:
            ctx.emit(SUMMARIZED, {**fold.event(), AGENT_VERSION: self.config.version_label()})
            log.info(
                "conversation %s: %d messages (%d tokens) folded into its summary",
                ctx.event.conversation_id,
                fold.messages,
                fold.tokens,
            )
        return ChatRequest(
            messages=conversation.messages(turn),
            system=summaries.for_model(system, conversation.summary),
            facts=conversation.facts,
            tools=tools,
        )

    async def _ask(
        self, request: ChatRequest, conversation: Conversation, turn: Turn, ctx: Context
    ) -> Completion | None:
        provider = self.provider
        preview = None
        if self.previews is not None and streams(provider):
            reply_to = turn.reply_to or conversation.reply_to
            preview = self.previews.start(ctx.event, reply_to, from_millis(turn.ingress_at))
        try:
            with span(f"chat {provider.model}", _llm_attributes(provider), kind=SpanKind.CLIENT):
                if preview is not None and isinstance(provider, StreamingProvider):
                    completion = await provider.stream(request, preview)
                else:
                    completion = await provider.complete(request)
        except LLMError as exc:
            # The provider has retried already (PIPELINE_LLM__MAX_RETRIES); a handler retry
            # would multiply those calls, so the user gets the apology at once.
            log.error("giving up on the model for %s: %s", ctx.event.conversation_id, exc)
            _close(preview, interrupted=True)
            return None
        except BaseException:
            _close(preview, interrupted=True)
            raise
        _close(preview, interrupted=completion.text is None or bool(completion.tool_calls))
        return completion


def _close(preview: Preview | None, *, interrupted: bool) -> None:
    if preview is not None:
        preview.close(interrupted=interrupted)


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
