"""Answers as they are written: what a provider that streams offers besides ``complete``.

A streaming provider (:class:`StreamingProvider`) writes the answer's text to a
:class:`TextSink` as the model produces it and returns the assembled
:class:`~pipeline.llm.base.Completion` at the end, the same one ``complete`` would have
returned: that completion stays the one result of the call (journaled, turned into the
turn's ``response_ready``); the text written on the way is a preview.

When a provider has to ask the model again in the middle of an answer (the connection
was lost, a retry after a 5xx), it calls :meth:`TextSink.restart` first: what was
written so far is void, and the answer is written again from its start.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from pipeline.llm.base import ChatRequest, Completion


class TextSink(Protocol):
    """Where a streaming provider writes an answer's text while the model writes it."""

    def write(self, text: str) -> None:
        """More text of the answer (never blocks: the sink buffers)."""
        ...

    def restart(self) -> None:
        """The answer starts again from nothing: forget what was written so far."""
        ...


@runtime_checkable
class StreamingProvider(Protocol):
    """A provider that can write its answer to a :class:`TextSink` as it comes.

    ``can_stream`` says whether it streams as configured (an OpenAI-compatible provider
    with ``PIPELINE_LLM__STREAM=false`` does not); when False the agent calls
    ``complete``.
    """

    name: str
    model: str
    can_stream: bool

    async def complete(self, request: ChatRequest) -> Completion: ...

    async def stream(self, request: ChatRequest, sink: TextSink) -> Completion:
        """The completion of ``request``, its text written to ``sink`` on the way."""
        ...

    async def aclose(self) -> None: ...


def streams(provider: object) -> bool:
    """Whether ``provider`` streams its answers as configured."""
    return isinstance(provider, StreamingProvider) and bool(provider.can_stream)


class CollectedText:
    """A sink that keeps what was written (tests, and callers that want the text too)."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.restarts = 0

    def write(self, text: str) -> None:
        self.parts.append(text)

    def restart(self) -> None:
        self.parts.clear()
        self.restarts += 1

    @property
    def text(self) -> str:
        return "".join(self.parts)
