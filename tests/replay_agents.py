"""Agent versions for replay tests: one that answers as the built-in agent does, in upper
case. ``pipeline replay CONVERSATION --service replay_agents:shouting --app-dir tests``."""

from __future__ import annotations

from dataclasses import replace

from pipeline.config import Settings
from pipeline.llm import ChatRequest, Completion, DeterministicProvider
from pipeline.runtime.service import Service
from pipeline.services.agent import build
from pipeline.toolbox.tool_offer import ToolOffer


class ShoutingProvider:
    """The deterministic provider, its texts upper-cased (tool calls unchanged)."""

    name = "shouting"
    model = "rules-v1-upper"

    def __init__(self) -> None:
        self.inner = DeterministicProvider()

    async def complete(self, request: ChatRequest) -> Completion:
        completion = await self.inner.complete(request)
        text = completion.text.upper() if completion.text is not None else None
        return replace(completion, text=text)

    async def aclose(self) -> None:
        await self.inner.aclose()


def shouting(settings: Settings, *, tools: ToolOffer | None = None) -> Service:
    """The built-in agent with the shouting provider (a factory ``pipeline replay`` loads)."""
    return build(settings, provider=ShoutingProvider(), tools=tools)
