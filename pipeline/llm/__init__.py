"""LLM providers behind one interface (:class:`LLMProvider`).

- ``deterministic`` (the default): rules, no network; see :mod:`pipeline.llm.deterministic`.
- ``openai``: any OpenAI-compatible chat-completions endpoint; see :mod:`pipeline.llm.openai`.
- ``recorded``: replays only, the answers the model gave when a conversation was
  recorded; see :mod:`pipeline.llm.recorded`.

A provider that streams (:class:`StreamingProvider`, :mod:`pipeline.llm.streaming`) also
writes its answer to a :class:`TextSink` while the model writes it.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from pipeline.config.sections import LLMSettings
from pipeline.errors import ConfigError, LLMError
from pipeline.llm.base import (
    ChatMessage,
    ChatRequest,
    Completion,
    LLMProvider,
    ToolCall,
    ToolSpec,
    Usage,
)
from pipeline.llm.deterministic import DeterministicProvider
from pipeline.llm.openai import OpenAIProvider
from pipeline.llm.recorded import RecordedAnswers, RecordedProvider
from pipeline.llm.streaming import StreamingProvider, TextSink, streams

__all__ = [
    "ChatMessage",
    "ChatRequest",
    "Completion",
    "DeterministicProvider",
    "LLMError",
    "LLMProvider",
    "OpenAIProvider",
    "RecordedAnswers",
    "RecordedProvider",
    "StreamingProvider",
    "TextSink",
    "ToolCall",
    "ToolSpec",
    "Usage",
    "create_provider",
    "streams",
]

PROVIDERS = ("deterministic", "openai", "recorded")


def create_provider(
    settings: LLMSettings, *, registry: CollectorRegistry, service: str
) -> LLMProvider:
    """The provider ``settings.provider`` names, its metrics on ``registry``."""
    if settings.provider == "deterministic":
        return DeterministicProvider(settings.deterministic_words_per_second)
    if settings.provider == "openai":
        return OpenAIProvider(settings, registry=registry, service=service)
    if settings.provider == "recorded":
        return RecordedProvider()
    raise ConfigError(
        f"unknown LLM provider {settings.provider!r}: set PIPELINE_LLM__PROVIDER to one of "
        + ", ".join(PROVIDERS)
    )
