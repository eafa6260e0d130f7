"""Previews: an answer's text sent while the model writes it, as ``response_delta`` events.

A turn whose reply goes to a channel that previews (``agent.stream_channels``) and whose
provider streams gets a :class:`Preview`: the provider writes the text to it
(:class:`~pipeline.llm.streaming.TextSink`) and it sends the text in deltas, keyed by
conversation, on their own topic. The final ``response_ready`` carries the preview's
``stream_id`` and replaces it; a delta may be lost without harm.

Deltas never go through the handler's outputs (in exactly-once mode they would wait for
the transaction) but through the runtime's durable publisher, at once, and the handler
never waits for them. One delta is in flight at a time: the text written meanwhile is
sent together in the next one, at most one per ``agent.delta_interval_seconds`` unless
``agent.delta_max_chars`` are waiting, the first at once. So a long answer is tens of
records, a slow broker makes them larger instead of queueing more of them, and what
waits is bounded by the answer itself. When the model is done, what is left goes out at
once; a stream that ends without an answer (tool calls, a failure) sends a last delta
marked ``interrupted``, so readers drop its preview.

The stream id derives from the handled event: handled again (after a crash) the turn
writes the same stream, from sequence 0 again, which readers take as a new start.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram

from pipeline.channels.web.inbound import STREAM_ADDRESS
from pipeline.config.sections import AgentSettings
from pipeline.errors import PipelineError
from pipeline.events.model import AGENT_VERSION, Event
from pipeline.runtime.publisher import Publisher

log = logging.getLogger(__name__)

DELTA = "response_delta"
DELTA_ACK_SECONDS = 5.0
DELTAS_PER_ANSWER_BUCKETS = (1, 2, 5, 10, 20, 35, 50, 75, 100, 150, 250, 500)


def stream_id_of(event_id: uuid.UUID) -> uuid.UUID:
    """The stream of the answer to the handled event ``event_id``: the same every time."""
    return uuid.uuid5(event_id, DELTA)


class PreviewMetrics:
    """Deltas sent or lost, and deltas per previewed answer."""

    def __init__(self, registry: CollectorRegistry, service: str) -> None:
        deltas = Counter(
            "pipeline_agent_response_deltas_total",
            "Deltas of answers being written (response_delta), by outcome: sent "
            "(acknowledged) or failed (not written; the final answer replaces it anyway).",
            ["service", "outcome"],
            registry=registry,
        )
        self.sent = deltas.labels(service, "sent")
        self.failed = deltas.labels(service, "failed")
        self.per_answer = Histogram(
            "pipeline_agent_deltas_per_answer",
            "Deltas one previewed answer took.",
            ["service"],
            buckets=DELTAS_PER_ANSWER_BUCKETS,
            registry=registry,
        ).labels(service)


class Previews:
    """Makes the previews of turns: which channels preview, and where deltas go."""

    def __init__(
        self,
        config: AgentSettings,
        durable: Callable[[], Publisher | None],
        metrics: PreviewMetrics,
    ) -> None:
        self.config = config
        self._durable = durable
        self.metrics = metrics
        self._sending: set[asyncio.Task[None]] = set()

    def previews(self, reply_to: dict[str, Any] | None) -> bool:
        """Whether answers to ``reply_to`` are previewed: its channel is one of
        ``agent.stream_channels``, and for the web, the answer goes to the browsers'
        stream (a callback URL gets the final answer only)."""
        if reply_to is None:
            return False
        channel = str(reply_to.get("channel"))
        if channel == "web" and reply_to.get("address") != STREAM_ADDRESS:
            return False
        return channel in self.config.stream_channels

    def stream_of(self, event: Event, reply_to: dict[str, Any] | None) -> uuid.UUID | None:
        """The stream of the answer to ``event``, or None when it is not previewed (a
        channel that does not preview, or the service is not running)."""
        if self._durable() is None or not self.previews(reply_to):
            return None
        return stream_id_of(event.id)

    def start(
        self, event: Event, reply_to: dict[str, Any] | None, ingress_at: datetime | None
    ) -> Preview | None:
        """The preview of the answer to ``event``, or None when it has none (a channel
        that does not preview, or the service is not running)."""
        publisher = self._durable()
        if publisher is None or not self.previews(reply_to):
            return None
        return Preview(
            publisher,
            event,
            reply_to,
            ingress_at,
            interval=self.config.delta_interval_seconds,
            max_chars=self.config.delta_max_chars,
            version=self.config.version_label(),
            metrics=self.metrics,
            tasks=self._sending,
        )


class Preview:
    """One answer's deltas: written to by the provider, sent in the background."""

    def __init__(
        self,
        publisher: Publisher,
        cause: Event,
        reply_to: dict[str, Any] | None,
        ingress_at: datetime | None,
        *,
        interval: float,
        max_chars: int,
        version: str | None = None,
        metrics: PreviewMetrics,
        tasks: set[asyncio.Task[None]],
    ) -> None:
        self.stream_id = stream_id_of(cause.id)
        self._publisher = publisher
        self._cause = cause
        self._reply_to = reply_to
        self._ingress_at = ingress_at
        self._interval = interval
        self._max_chars = max_chars
        self._version = version
        self._metrics = metrics
        self._tasks = tasks
        self._pending: list[str] = []
        self._pending_chars = 0
        self._sequence = 0
        self._closed = False
        self._interrupted = False
        self._idle = True  # the sender waits for text, not for its next turn
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.sent = 0

    # ------------------------------------------------------------------ TextSink

    def write(self, text: str) -> None:
        if self._closed or not text:
            return
        self._pending.append(text)
        self._pending_chars += len(text)
        if self._task is None:
            self._task = asyncio.create_task(self._send_all(), name=f"preview-{self.stream_id}")
            self._tasks.add(self._task)
            self._task.add_done_callback(self._tasks.discard)
        elif self._idle or self._pending_chars >= self._max_chars:
            self._wake.set()

    def restart(self) -> None:
        """The model starts the answer again: what was not sent is dropped, and the next
        delta starts the stream again at sequence 0 (readers clear the preview)."""
        self._pending.clear()
        self._pending_chars = 0
        self._sequence = 0

    # ------------------------------------------------------------------ the end

    def close(self, *, interrupted: bool) -> None:
        """The model is done: send what is left at once; ``interrupted`` when its answer
        is not a text for the user (readers drop the preview). Does not wait."""
        if self._closed:
            return
        self._closed = True
        self._interrupted = interrupted
        if self._task is not None:
            self._wake.set()

    @property
    def started(self) -> bool:
        """Whether any text was written (so readers may show a preview)."""
        return self._task is not None

    async def _send_all(self) -> None:
        last_sent = float("-inf")
        try:
            while True:
                if not self._pending:
                    if self._closed:
                        if self._interrupted:
                            await self._send("", interrupted=True)
                        return
                    await self._wait(None)
                    continue
                due = last_sent + self._interval - time.monotonic()
                if due > 0 and not self._closed and self._pending_chars < self._max_chars:
                    await self._wait(due)
                    continue
                text = "".join(self._pending)
                self._pending.clear()
                self._pending_chars = 0
                last_sent = time.monotonic()
                await self._send(text, interrupted=self._closed and self._interrupted)
                if self._closed and self._interrupted and not self._pending:
                    return
        finally:
            self._metrics.per_answer.observe(self.sent)

    async def _wait(self, seconds: float | None) -> None:
        self._idle = seconds is None
        self._wake.clear()
        try:
            await asyncio.wait_for(self._wake.wait(), seconds)
        except TimeoutError:
            pass
        finally:
            self._idle = False

    async def _send(self, text: str, *, interrupted: bool) -> None:
        data = {
            "stream_id": self.stream_id,
            "sequence": self._sequence,
            "text": text,
            "interrupted": interrupted,
            "reply_to": self._reply_to,
            "ingress_at": self._ingress_at,
            AGENT_VERSION: self._version,
        }
        self._sequence += 1
        cause = self._cause
        try:
            await self._publisher.publish(
                DELTA,
                data,
                conversation_id=cause.conversation_id,
                tenant_id=cause.metadata.tenant_id,
                cause=cause,
                ack_timeout=DELTA_ACK_SECONDS,
            )
        except PipelineError as exc:
            # A preview: the final answer replaces it whether or not this delta arrives.
            self._metrics.failed.inc()
            log.debug(
                "delta %s of stream %s not written: %s", data["sequence"], self.stream_id, exc
            )
            return
        self.sent += 1
        self._metrics.sent.inc()
