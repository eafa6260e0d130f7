"""Calling the model: the one place the agent asks its provider for a completion.

:class:`ModelCall` builds the request of a turn (the system prompt with the note a handoff
left, the conversation's messages and facts, the tools offered to the tenant and the
agent's own ``escalate``) and sends it in a client span. A provider that fails after its
own retries (``PIPELINE_LLM__MAX_RETRIES``) gives no completion: the turn apologises
instead of retrying the handler, which would multiply those calls.
"""

from __future__ import annotations

import asyncio
import logging

from opentelemetry.trace import SpanKind

from pipeline.config import Settings
from pipeline.llm import ChatRequest, Completion, LLMError, LLMProvider
from pipeline.runtime.context import Context
from pipeline.runtime.publisher import Publisher
from pipeline.runtime.service import Background
from pipeline.runtime.spans import span
from pipeline.services.agent import handoff
from pipeline.services.agent.conversation import Conversation, Turn
from pipeline.toolbox.tool_offer import ToolOffer

log = logging.getLogger(__name__)


class ModelCall:
    """Asks ``provider`` for a turn's next step, offering the tools of ``tools``."""

    def __init__(self, settings: Settings, provider: LLMProvider, tools: ToolOffer) -> None:
        self.settings = settings
        self.config = settings.agent
        self.provider = provider
        self.tools = tools  # what the model is offered: the advertised tool catalog

    async def complete(
        self, conversation: Conversation, turn: Turn, ctx: Context
    ) -> Completion | None:
        """The model's completion of ``turn``, or None when the provider gave up."""
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
