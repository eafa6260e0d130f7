"""One record's way through its handler: decode, attempts with retries, outputs, dead letter.

A record is finished (its offset may be committed) once everything its successful attempt
emitted is acknowledged by the broker, or once its dead letter is. In exactly-once mode
a record's outputs (or its dead letter) enter the open transaction together, through the
transaction's gate, and not at all once its partition was handed back: the next owner
handles it again and its transaction carries the outputs. A failed attempt emits
nothing. A handler error is retried with backoff up to ``max_retries``; an undecodable
record, a ``RejectEvent`` and an emit of an unknown or undeclared event type
(``EventTypeError``) go to the dead-letter topic at once.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from confluent_kafka import KafkaError, KafkaException

from pipeline.config import Settings
from pipeline.errors import EventTypeError, RejectEvent, SerdeError
from pipeline.events.model import Event
from pipeline.events.serde import SingleObjectSerde
from pipeline.observability.metrics import HandlerMetrics, RuntimeMetrics
from pipeline.observability.otel import OBSERVE
from pipeline.retry import backoff_seconds
from pipeline.runtime.context import Context, Outgoing
from pipeline.runtime.dead_letter import Failure, dead_letter_record
from pipeline.runtime.headers import TRACEPARENT, header
from pipeline.runtime.offset_tracker import PartitionOffsets
from pipeline.runtime.ports import AckCallback, ProducerPort, Record
from pipeline.runtime.run_state import RunState
from pipeline.runtime.spans import dropped, ending, observed_attempt
from pipeline.runtime.transaction import Transaction

if TYPE_CHECKING:
    from pipeline.runtime.service import HandlerSpec

log = logging.getLogger("pipeline.runtime")


@dataclass(slots=True)
class Route:
    """Where one topic's records go: its handler and that handler's metric children."""

    handler: HandlerSpec
    metrics: HandlerMetrics
    # Counted here per record and added to the metrics in bulk (see flush_counts).
    consumed: int = 0
    succeeded: int = 0


@dataclass(slots=True)
class Work:
    """One fetched record on its way through a lane."""

    msg: Record
    part: PartitionOffsets
    route: Route


def finished(work: Work) -> None:
    """The record's work is over: its offset may pass under the watermark."""
    work.part.in_progress -= 1
    work.part.finished(work.msg.offset() or 0)


class RecordProcessor:
    """Handles one record at a time per call of :meth:`process` (the lanes call it)."""

    def __init__(
        self,
        *,
        name: str,
        settings: Settings,
        serde: SingleObjectSerde,
        metrics: RuntimeMetrics,
        state: RunState,
        routes: Iterable[Route],
        emits: frozenset[str],
        emits_declared: bool,
    ) -> None:
        self.name = name
        self.group_id = f"{settings.topic_prefix}{name}"
        self.settings = settings
        self.serde = serde
        self.metrics = metrics
        self.state = state
        self.routes = list(routes)
        self.emits = emits
        self.emits_declared = emits_declared
        self.dead_letter_topic = settings.topic(settings.dead_letter_topic)
        # A few event types, asked per emit: remember their topic names.
        self.topic_for: Callable[[str], str] = functools.cache(settings.topic)
        self.producer: ProducerPort | None = None
        self.transaction: Transaction | None = None
        self.unacked = 0  # records produced for handled events, not yet acknowledged
        self.produced_counts: dict[tuple[str, str], int] = {}
        self._produced_children: dict[tuple[str, str], Any] = {}

    def attach(self, producer: ProducerPort, transaction: Transaction | None = None) -> None:
        """``producer`` is the raw one: in exactly-once mode the outputs pass the
        ``transaction``'s gate here, a record's outputs at once."""
        self.producer = producer
        self.transaction = transaction

    def _produce_failed(self, err: KafkaError) -> None:
        if self.transaction is None:
            self.state.fail(KafkaException(err))
        else:
            self.transaction.produce_failed(err)

    async def process(self, work: Work) -> bool:
        """Decode, handle with retries, produce outputs; False if abandoned on shutdown."""
        producer = self.producer
        assert producer is not None, "attach a producer first"
        msg, handler, metrics = work.msg, work.route.handler, work.route.metrics
        try:
            event = self.serde.decode(msg.value() or b"")
        except SerdeError as exc:
            failure = Failure(
                "decode", exc, 0, self.name, handler.name, handler.event_type, _key_text(msg)
            )
            return await self._dead_letter(work, failure)

        traceparent = header(msg, TRACEPARENT)
        attempt = 0
        while True:
            attempt += 1
            ctx = Context(
                event,
                service=self.name,
                attempt=attempt,
                serde=self.serde,
                topic_for=self.topic_for,
                traceparent=traceparent,
                logger=log,
                topic=work.part.topic,
                partition=work.part.partition,
                offset=msg.offset() or 0,
                emits=self.emits,
                emits_declared=self.emits_declared,
            )
            started = time.perf_counter()
            try:
                if OBSERVE.active:  # spans or log context: off unless configured
                    await observed_attempt(handler, event, ctx, msg, self.group_id)
                else:
                    await handler.fn(event, ctx)
            except RejectEvent as exc:
                metrics.duration.observe(time.perf_counter() - started)
                metrics.errors.inc()
                log.warning(
                    "%s rejected %s[%d]@%d: %s",
                    handler.name,
                    msg.topic(),
                    msg.partition(),
                    msg.offset(),
                    exc,
                )
                failure = self._failure(exc.stage, exc, attempt, work, event)
                if self.transaction is None:
                    for o in ctx.outgoing:
                        await producer.produce(
                            o.topic, o.value, o.key, o.headers, _traced(o, self._acked)
                        )
                    return await self._dead_letter(work, failure)
                return await self._dead_letter(work, failure, ctx.outgoing)
            except EventTypeError as exc:
                # A retry would emit the same type again: dead-letter now, emit nothing.
                metrics.duration.observe(time.perf_counter() - started)
                metrics.errors.inc()
                log.warning(
                    "%s failed on %s[%d]@%d, dead-lettering without retries: %s",
                    handler.name,
                    msg.topic(),
                    msg.partition(),
                    msg.offset(),
                    exc,
                )
                dropped((o.span for o in ctx.outgoing), "the handler emitted an undeclared type")
                return await self._dead_letter(
                    work, self._failure("handler", exc, attempt, work, event)
                )
            except Exception as exc:
                metrics.duration.observe(time.perf_counter() - started)
                metrics.errors.inc()
                dropped((o.span for o in ctx.outgoing), f"attempt {attempt} failed")
                if attempt > self.settings.max_retries:
                    log.warning(
                        "%s failed %d times on %s[%d]@%d, dead-lettering: %r",
                        handler.name,
                        attempt,
                        msg.topic(),
                        msg.partition(),
                        msg.offset(),
                        exc,
                    )
                    failure = self._failure("handler", exc, attempt, work, event)
                    return await self._dead_letter(work, failure)
                delay = backoff_seconds(
                    attempt,
                    self.settings.retry_backoff_initial_seconds,
                    self.settings.retry_backoff_max_seconds,
                )
                log.info(
                    "%s attempt %d failed (%r); retrying in %.2fs",
                    handler.name,
                    attempt,
                    exc,
                    delay,
                )
                if await self.state.closing_within(delay):
                    return False
                continue
            metrics.duration.observe(time.perf_counter() - started)
            break

        work.route.succeeded += 1
        metrics.latency.observe(max(0.0, time.time() - event.metadata.occurred_millis / 1000))
        outgoing = ctx.take_outgoing()
        if not outgoing:
            finished(work)
            return True
        if self.transaction is not None:
            async with self.transaction.gate.producing():
                if work.part.revoked:
                    return False  # handed back: its next owner produces the outputs
                await self._produce(work, outgoing)
            return True
        await self._produce(work, outgoing)
        return True

    async def _produce(self, work: Work, outgoing: list[Outgoing]) -> None:
        producer = self.producer
        assert producer is not None
        waiting = len(outgoing)
        self.unacked += waiting
        failed = False

        def acknowledged(err: KafkaError | None, _msg: Any) -> None:
            nonlocal waiting, failed
            self.unacked -= 1
            if err is not None:
                self._produce_failed(err)
                if not failed:
                    failed = True
                    work.part.in_progress -= 1  # abandoned: the transaction aborts
                return
            waiting -= 1
            if waiting == 0 and not failed:
                counts = self.produced_counts
                for o in outgoing:
                    kind = (o.topic, o.event_type)
                    counts[kind] = counts.get(kind, 0) + 1
                finished(work)
                if not self.unacked:  # a burst is over: show it in the metrics now
                    self.flush_counts()

        produce = producer.produce_nowait
        for o in outgoing:
            on_ack = _traced(o, acknowledged)
            if not produce(o.topic, o.value, o.key, o.headers, on_ack):
                await producer.produce(o.topic, o.value, o.key, o.headers, on_ack)

    def _acked(self, err: KafkaError | None, _msg: Any) -> None:
        # Outputs of a rejected event: the dead letter's acknowledgement gates its commit.
        if err is not None:
            self._produce_failed(err)

    def flush_counts(self) -> None:
        """Add the per-record counts to their metrics: after each fetched batch, when the
        last output in flight is acknowledged, on each commit tick and at shutdown, so the
        hot path never takes a metric's lock."""
        for route in self.routes:
            if route.consumed:
                route.metrics.consumed.inc(route.consumed)
                route.consumed = 0
            if route.succeeded:
                route.metrics.succeeded.inc(route.succeeded)
                route.succeeded = 0
        if self.produced_counts:
            counts, self.produced_counts = self.produced_counts, {}
            for (topic, event_type), count in counts.items():
                child = self._produced_children.get((topic, event_type))
                if child is None:
                    child = self.metrics.produced.labels(self.name, topic, event_type)
                    self._produced_children[(topic, event_type)] = child
                child.inc(count)

    def _failure(
        self, stage: str, exc: BaseException, attempts: int, work: Work, event: Event
    ) -> Failure:
        handler = work.route.handler.name
        return Failure(stage, exc, attempts, self.name, handler, event.type, event.conversation_id)

    async def _dead_letter(
        self, work: Work, failure: Failure, outgoing: list[Outgoing] | None = None
    ) -> bool:
        """Dead-letter the record; in exactly-once mode, with ``outgoing`` (what a
        rejecting handler emitted) in the same transaction.

        The record is finished in the dead letter's acknowledgement callback itself, as a
        handler's outputs finish theirs: a commit that takes the positions right after
        the producer's flush then carries the dead letter's offset with the dead letter,
        never the dead letter without its offset.
        """
        producer = self.producer
        assert producer is not None
        value, headers = dead_letter_record(self.serde, work.msg, failure)
        handler = failure.handler or "none"
        event_type = failure.event_type or "unknown"
        self.unacked += 1

        def acknowledged(err: KafkaError | None, _msg: Any) -> None:
            self.unacked -= 1
            if err is not None:
                self._produce_failed(err)
                work.part.in_progress -= 1  # abandoned: read again after the abort
                return
            self.metrics.dead_letters.labels(self.name, handler, event_type, failure.stage).inc()
            self.metrics.handled.labels(self.name, handler, event_type, "dead_lettered").inc()
            finished(work)

        topic, key = self.dead_letter_topic, work.msg.key()
        if self.transaction is None:
            await producer.produce(topic, value, key, headers, acknowledged)
            return True
        async with self.transaction.gate.producing():
            if work.part.revoked:
                self.unacked -= 1
                return False
            for o in outgoing or ():
                await producer.produce(o.topic, o.value, o.key, o.headers, _traced(o, self._acked))
            await producer.produce(topic, value, key, headers, acknowledged)
        return True


def _traced(outgoing: Outgoing, on_ack: AckCallback) -> AckCallback:
    """``on_ack``, ending the record's send span first when it has one."""
    return on_ack if outgoing.span is None else ending(outgoing.span, on_ack)


def _key_text(msg: Record) -> str | None:
    key = msg.key()
    if isinstance(key, bytes):
        return key.decode("utf-8", "replace")
    return key
