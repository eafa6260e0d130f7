"""The consumer loop: keyed concurrency, watermark commits, retries, dead letters, drain.

Threads: one thread runs every ``Consumer`` call (``consume``, commits, pause/resume, and
the rebalance callbacks ``consume`` calls); everything else, handlers and all bookkeeping,
runs on the asyncio loop. Rebalance callbacks hand their work to the loop and wait for
it, so state is only ever touched from the loop.

Fetched records queue in one lane per key (conversation). A fixed pool of
``max_in_flight`` worker tasks takes lanes that have work and no worker, and handles a
lane's records one after another: one conversation strictly in order, up to
``max_in_flight`` conversations at once, and no task created per record.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from pipeline.errors import RejectEvent, SerdeError
from pipeline.events.catalog import SchemaCatalog
from pipeline.events.model import Event
from pipeline.events.serde import SingleObjectSerde
from pipeline.observability.health import HealthServer
from pipeline.observability.metrics import HandlerMetrics, RuntimeMetrics
from pipeline.runtime.context import Context
from pipeline.runtime.dead_letter import Failure, dead_letter_record
from pipeline.runtime.headers import TRACEPARENT, header
from pipeline.runtime.offset_tracker import PartitionOffsets, decode_finished
from pipeline.runtime.producer import AsyncProducer, producer_config
from pipeline.runtime.publisher import Publisher
from pipeline.runtime.retry import backoff_seconds

if TYPE_CHECKING:
    from pipeline.runtime.service import Background, HandlerSpec, PartitionsHook, Service

log = logging.getLogger("pipeline.runtime")

TP = tuple[str, int]
POLL_BATCH = 500  # records taken from the client at most per fetch
POLL_TIMEOUT_SECONDS = 0.1  # longest wait for a first record; bounds how late a stop is seen
STALE_LOOP_SECONDS = 60.0
WORKER_STREAK = 64  # records a worker handles before it lets other tasks run


@dataclass(slots=True)
class Route:
    """Where one topic's records go: its handler and that handler's metric children."""

    handler: HandlerSpec
    metrics: HandlerMetrics
    # Counted here per record and added to the metrics in bulk (see Runner._flush_counts).
    consumed: int = 0
    succeeded: int = 0


@dataclass(slots=True)
class Work:
    """One fetched record on its way through a lane."""

    msg: Message
    part: PartitionOffsets
    route: Route


class Runner:
    """Runs one Service until stopped."""

    def __init__(self, service: Service) -> None:
        settings = service.settings
        self.settings = settings
        self.name = service.name
        self.service = service
        self.group_id = f"{settings.topic_prefix}{service.name}"
        self.serde = SingleObjectSerde(SchemaCatalog.load(settings.resource_dir("schemas")))
        self.metrics = RuntimeMetrics(service.registry, self.name)
        self.registry = service.registry
        self.routes = {
            settings.topic(h.event_type): Route(
                h, self.metrics.for_handler(settings.topic(h.event_type), h.name, h.event_type)
            )
            for h in service.handlers
        }
        self.dead_letter_topic = settings.topic(settings.dead_letter_topic)

        self.partitions: dict[TP, PartitionOffsets] = {}
        self.paused: set[TP] = set()
        self.lanes: dict[bytes, deque[Work]] = {}  # every key with queued or running work
        self.ready_lanes: deque[bytes] = deque()  # lanes with queued work and no worker
        self.idle: deque[asyncio.Future[None]] = deque()  # workers waiting for a lane
        self.busy = 0  # records being handled now
        self.waking = 0  # workers woken that have not run yet
        self._produced_children: dict[tuple[str, str], Any] = {}
        self.produced_counts: dict[tuple[str, str], int] = {}
        self.unacked = 0  # records produced for handled events, not yet acknowledged
        self.fatal: BaseException | None = None
        self.topic_for = functools.cache(settings.topic)  # a few event types, asked per emit
        self.ready = False
        self.heartbeat = time.monotonic()

    # ---------------------------------------------------------------- lifecycle

    async def run(self, stop: asyncio.Event) -> None:
        self.loop = asyncio.get_running_loop()
        self.closing = asyncio.Event()
        self.metrics.in_flight.set_function(lambda: self.busy)
        self.workers = [
            asyncio.create_task(self._work(), name=f"{self.name}-worker-{i}")
            for i in range(self.settings.max_in_flight)
        ]
        for worker in self.workers:
            worker.add_done_callback(self._worker_done)
        self.producer = AsyncProducer(
            producer_config(self.settings, f"{self.name}-producer"), self.loop
        )
        self.publisher = Publisher(self.settings, self.producer, self.serde, self.name)
        self.consumer = Consumer(self._consumer_config())
        self.poller = ThreadPoolExecutor(1, thread_name_prefix=f"{self.name}-consumer")
        health = self._start_health_server()
        self.consumer.subscribe(
            list(self.routes),
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_lost,
        )
        log.info("service %s consuming %s as group %s", self.name, list(self.routes), self.group_id)
        committer = asyncio.create_task(self._commit_periodically())
        background = [
            asyncio.create_task(self._supervise(task)) for task in self.service.background_tasks
        ]
        try:
            while not stop.is_set() and self.fatal is None:
                batch = await self.loop.run_in_executor(self.poller, self._fetch)
                self.heartbeat = time.monotonic()
                self.ready = True
                for msg in batch:
                    self._dispatch(msg)
                self._flush_counts()
                await self._apply_backpressure()
        finally:
            self.ready = False
            committer.cancel()
            for task in background:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)
            await self._shutdown()
            if health is not None:
                health.stop()
        if self.fatal is not None:
            raise self.fatal

    def _fetch(self) -> list[Message]:
        """The records the client has, as soon as it has one (on the consumer thread).

        librdkafka's batch consume returns only when the batch is full or its timeout has
        passed, so ``consume(POLL_BATCH, timeout)`` would hold a lone record for the whole
        timeout at every hop. Waiting for one record returns the moment it arrives; the
        rest of the batch is then whatever the client already holds, taken without
        waiting, so heavy traffic still comes in batches (the records that arrived while
        the loop handled the previous one). With no traffic this wakes once per timeout,
        as before.
        """
        first = self.consumer.consume(1, POLL_TIMEOUT_SECONDS)
        if not first:
            return first
        return first + self.consumer.consume(POLL_BATCH - 1, 0)

    def _consumer_config(self) -> dict[str, Any]:
        return {
            "client.id": f"{self.name}-consumer",
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
            "session.timeout.ms": 45000,
            **self.settings.consumer_config(),
            # The runtime's guarantees rest on these: never overridden.
            "group.id": self.group_id,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "partition.assignment.strategy": self.service.assignment_strategy,
            "on_commit": self._on_commit,
        }

    async def _supervise(self, task: Background) -> None:
        """A background task that ends on an error stops the service."""
        try:
            await task(self.publisher)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._fail(exc)

    def _start_health_server(self) -> HealthServer | None:
        if not self.settings.metrics_port:
            return None
        server = HealthServer(
            self.registry,
            self.settings.metrics_host,
            self.settings.metrics_port,
            healthy=self._healthy,
            ready=self._ready,
        )
        server.start()
        return server

    def _healthy(self) -> tuple[bool, str]:
        if self.fatal is not None:
            return False, f"stopped on {type(self.fatal).__name__}: {self.fatal}"
        idle = time.monotonic() - self.heartbeat
        if idle > STALE_LOOP_SECONDS:
            return False, f"consumer loop has not polled for {idle:.0f}s"
        return True, "polling"

    def _ready(self) -> tuple[bool, str]:
        healthy, reason = self._healthy()
        if not healthy:
            return False, reason
        if not self.ready:
            return False, "not consuming (starting or shutting down)"
        return True, f"{len(self.partitions)} partitions assigned"

    async def _shutdown(self) -> None:
        """Stop fetching, hand back unstarted work, drain started work, commit, close."""
        self.closing.set()
        deadline = time.monotonic() + self.settings.drain_timeout_seconds
        # Workers skip queued records once closing is set and finish the ones they hold.
        while self.lanes and self.fatal is None and _left(deadline):  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        if self.lanes:
            log.warning(
                "%d conversations still busy at the drain deadline; their "
                "events will be handled again after restart",
                len(self.lanes),
            )
        for worker in self.workers:
            worker.cancel()
        await asyncio.gather(*self.workers, return_exceptions=True)
        await self.producer.flush(_left(deadline))
        # Acknowledgements reach the loop in batches; polling beats an event set per record.
        while self.unacked and self.fatal is None and _left(deadline):  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        offsets = self._committable(self.partitions.values(), force=True)
        if offsets and self.fatal is None:
            await self.loop.run_in_executor(self.poller, self._commit_sync, offsets)
        await self.loop.run_in_executor(self.poller, self.consumer.close)
        self.poller.shutdown(wait=True)
        remaining = await self.producer.aclose(5.0)
        if remaining:
            log.error("%d produced records were not acknowledged at close", remaining)
        self._flush_counts()
        log.info("service %s stopped", self.name)

    def _fail(self, exc: BaseException) -> None:
        """A failure the runtime cannot recover from: stop without committing past it."""
        if self.fatal is None:
            log.error("service %s is stopping: %s", self.name, exc)
            self.fatal = exc

    # ---------------------------------------------------------------- dispatch

    def _dispatch(self, msg: Message) -> None:
        err = msg.error()
        if err is not None:
            if err.code() == KafkaError._PARTITION_EOF:
                return
            if err.fatal():
                self._fail(KafkaException(err))
            else:
                log.warning("consumer error: %s", err)
            return
        topic, partition = msg.topic() or "", msg.partition() or 0
        part = self.partitions.get((topic, partition))
        offset = msg.offset() or 0
        if part is None or not part.received(offset):
            return  # a partition revoked meanwhile, or an offset already tracked
        if offset in part.skip:
            part.skip.discard(offset)  # an earlier owner finished it: commit, don't repeat
            part.finished(offset)
            self.metrics.skipped.labels(self.name, topic).inc()
            return
        route = self.routes[topic]
        route.consumed += 1
        key = msg.key()
        lane_key = key if isinstance(key, bytes) else f"\0{topic}\0{partition}".encode()
        lane = self.lanes.get(lane_key)
        if lane is not None:
            lane.append(Work(msg, part, route))
            return
        self.lanes[lane_key] = deque((Work(msg, part, route),))
        self.ready_lanes.append(lane_key)
        if not self.waking:
            self._wake_one()

    def _wake_one(self) -> None:
        """Wake an idle worker, unless all are busy.

        One worker is woken at a time: it wakes the next when it takes a lane and others
        are still waiting, so handlers that never wait are run by one worker in one go,
        and handlers that do wait get a worker per lane, one after another.
        """
        while self.idle:
            waiter = self.idle.popleft()
            if not waiter.done():  # a worker cancelled while waiting leaves a done one
                waiter.set_result(None)
                self.waking += 1
                return

    async def _work(self) -> None:
        """One worker: take a lane with work, handle its records in order, repeat."""
        ready, lanes = self.ready_lanes, self.lanes
        streak = 0
        while True:
            if not ready:
                waiter = self.loop.create_future()
                self.idle.append(waiter)
                try:
                    await waiter
                finally:
                    if waiter.done() and not waiter.cancelled():
                        self.waking -= 1
                continue
            lane_key = ready.popleft()
            lane = lanes[lane_key]
            if ready and not self.waking:
                self._wake_one()
            try:
                while lane:
                    work = lane.popleft()
                    if work.part.revoked or self.closing.is_set():
                        continue  # handed back: the next owner reads it from the commit
                    work.part.in_progress += 1
                    self.busy += 1
                    try:
                        finished = await self._process(work)
                    finally:
                        self.busy -= 1
                    if not finished:
                        work.part.in_progress -= 1
                    streak += 1
                    if streak >= WORKER_STREAK:
                        # Handlers that never wait would otherwise hold the loop.
                        streak = 0
                        await asyncio.sleep(0)
            finally:
                del lanes[lane_key]

    def _worker_done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            # A bug in the runtime itself: stop rather than leave an offset stuck forever.
            self._fail(task.exception() or RuntimeError("worker failed"))

    async def _process(self, work: Work) -> bool:
        """Decode, handle with retries, produce outputs; False if abandoned on shutdown."""
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
            )
            started = time.perf_counter()
            try:
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
                for o in ctx.outgoing:
                    await self.producer.produce(o.topic, o.value, o.key, o.headers, self._acked)
                return await self._dead_letter(
                    work, self._failure(exc.stage, exc, attempt, work, event)
                )
            except Exception as exc:
                metrics.duration.observe(time.perf_counter() - started)
                metrics.errors.inc()
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
                if await self._closing_within(delay):
                    return False
                continue
            metrics.duration.observe(time.perf_counter() - started)
            break

        work.route.succeeded += 1
        metrics.latency.observe(max(0.0, time.time() - event.metadata.occurred_millis / 1000))
        outgoing = ctx.take_outgoing()
        if not outgoing:
            self._finished(work)
            return True
        waiting = len(outgoing)
        self.unacked += waiting

        def acknowledged(err: KafkaError | None, _msg: Message) -> None:
            nonlocal waiting
            self.unacked -= 1
            if err is not None:
                self._fail(KafkaException(err))
                return
            waiting -= 1
            if waiting == 0:
                counts = self.produced_counts
                for o in outgoing:
                    kind = (o.topic, o.event_type)
                    counts[kind] = counts.get(kind, 0) + 1
                self._finished(work)
                if not self.unacked:  # a burst is over: show it in the metrics now
                    self._flush_counts()

        produce = self.producer.produce_nowait
        for o in outgoing:
            if not produce(o.topic, o.value, o.key, o.headers, acknowledged):
                await self.producer.produce(o.topic, o.value, o.key, o.headers, acknowledged)
        return True

    def _acked(self, err: KafkaError | None, _msg: Message) -> None:
        # Outputs of a rejected event: the dead letter's acknowledgement gates its commit.
        if err is not None:
            self._fail(KafkaException(err))

    def _flush_counts(self) -> None:
        """Add the per-record counts to their metrics: after each fetched batch, when the
        last output in flight is acknowledged, on each commit tick and at shutdown, so the
        hot path never takes a metric's lock."""
        for route in self.routes.values():
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

    async def _dead_letter(self, work: Work, failure: Failure) -> bool:
        value, headers = dead_letter_record(self.serde, work.msg, failure)
        ack = await self.producer.send(self.dead_letter_topic, value, work.msg.key(), headers)
        try:
            await ack
        except KafkaException as exc:
            self._fail(exc)
            return False
        handler = failure.handler or "none"
        event_type = failure.event_type or "unknown"
        self.metrics.dead_letters.labels(self.name, handler, event_type, failure.stage).inc()
        self.metrics.handled.labels(self.name, handler, event_type, "dead_lettered").inc()
        self._finished(work)
        return True

    def _finished(self, work: Work) -> None:
        work.part.in_progress -= 1
        work.part.finished(work.msg.offset() or 0)

    async def _closing_within(self, seconds: float) -> bool:
        try:
            await asyncio.wait_for(self.closing.wait(), timeout=seconds)
        except TimeoutError:
            return False
        return True

    async def _apply_backpressure(self) -> None:
        """Pause partitions with too much unfinished work; resume them once it halves."""
        limit = self.settings.max_buffered_per_partition
        pause = [
            tp
            for tp, part in self.partitions.items()
            if tp not in self.paused and part.buffered >= limit
        ]
        resume = [
            tp
            for tp in self.paused
            if tp in self.partitions and self.partitions[tp].buffered <= limit // 2
        ]
        if not pause and not resume:
            return
        if await self._on_consumer_thread(self._pause_resume, pause, resume):
            self.paused.update(pause)
            self.paused.difference_update(resume)
        self.metrics.paused_partitions.set(len(self.paused))

    def _pause_resume(self, pause: list[TP], resume: list[TP]) -> bool:
        try:
            if pause:
                self.consumer.pause([TopicPartition(t, p) for t, p in pause])
            if resume:
                self.consumer.resume([TopicPartition(t, p) for t, p in resume])
        except KafkaException as exc:  # a partition revoked meanwhile
            log.warning("pause/resume failed: %s", exc)
            return False
        return True

    async def _on_consumer_thread(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run a Consumer call on the consumer thread.

        The loop never calls the Consumer itself: while a rebalance callback holds the
        consumer thread waiting for the loop, a Consumer call from the loop could wait
        for that same callback, and neither would move.
        """
        return await self.loop.run_in_executor(self.poller, fn, *args)

    # ---------------------------------------------------------------- commits

    async def _commit_periodically(self) -> None:
        while True:
            await asyncio.sleep(self.settings.commit_interval_seconds)
            self._flush_counts()
            try:
                pending = self._committable_by_part(self.partitions.values())
                marks = [
                    (part.topic, part.partition, mark)
                    for part in self.partitions.values()
                    if (mark := part.watermark()) is not None
                ]
                lag = await self._on_consumer_thread(self._commit_and_measure, pending, marks)
                for topic, partition, value in lag:
                    if (topic, partition) in self.partitions:
                        self.metrics.consumer_lag.labels(self.name, topic, str(partition)).set(
                            value
                        )
            except Exception as exc:  # a bug here would silently stop all commits
                self._fail(exc)
                return

    def _commit_and_measure(
        self,
        pending: list[tuple[PartitionOffsets, TopicPartition]],
        marks: list[tuple[str, int, int]],
    ) -> list[tuple[str, int, int]]:
        """Commit asynchronously, then the lag of each partition from cached watermarks.

        Runs after any rebalance callback that came first on the consumer thread: a
        partition revoked meanwhile was committed by its revoke, and committing its older
        position now would move the next owner back.
        """
        offsets = [tp for part, tp in pending if not part.revoked]
        if offsets:
            try:
                self.consumer.commit(offsets=offsets, asynchronous=True)
            except KafkaException as exc:
                self.metrics.commits.labels(self.name, "failure").inc()
                log.warning("commit failed: %s", exc)
        lag = []
        for topic, partition, mark in marks:
            try:
                _, high = self.consumer.get_watermark_offsets(
                    TopicPartition(topic, partition), cached=True
                )
            except KafkaException:
                continue
            if high >= 0:
                lag.append((topic, partition, max(0, high - mark)))
        return lag

    def _committable(
        self, parts: Iterable[PartitionOffsets], *, force: bool = False
    ) -> list[TopicPartition]:
        """Positions that changed since the last commit; with ``force``, every position
        (so a synchronous commit also covers an asynchronous one still in flight)."""
        return [tp for _, tp in self._committable_by_part(parts, force=force)]

    def _committable_by_part(
        self, parts: Iterable[PartitionOffsets], *, force: bool = False
    ) -> list[tuple[PartitionOffsets, TopicPartition]]:
        pending = []
        for part in parts:
            position = part.to_commit(force=force)
            if position is not None:
                mark, metadata = position
                tp = TopicPartition(part.topic, part.partition, mark, metadata or "")
                pending.append((part, tp))
                part.committed = position
        return pending

    def _commit_sync(self, offsets: list[TopicPartition]) -> None:
        try:
            self.consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:
            self.metrics.commits.labels(self.name, "failure").inc()
            log.warning("commit of %s failed: %s", offsets, exc)
        else:
            self.metrics.commits.labels(self.name, "success").inc()

    def _on_commit(self, err: KafkaError | None, partitions: list[TopicPartition]) -> None:
        if err is None or err.code() == KafkaError._NO_OFFSET:
            self.metrics.commits.labels(self.name, "success").inc()
        else:
            self.metrics.commits.labels(self.name, "failure").inc()
            log.warning("offset commit failed, will commit again: %s", err)
            # Runs on the consumer thread, where revokes also run: the parts are stable here.
            for tp in partitions:
                part = self.partitions.get((tp.topic, tp.partition))
                if part is not None:
                    part.committed = None

    # ---------------------------------------------------------------- rebalances
    # Called on the consumer thread inside consume()/close(); the work runs on the loop.

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        try:
            committed = consumer.committed(partitions, timeout=10)
        except KafkaException as exc:
            log.warning("cannot read committed offsets, nothing will be skipped: %s", exc)
            committed = []
        asyncio.run_coroutine_threadsafe(self._assigned(partitions, committed), self.loop).result()

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        future = asyncio.run_coroutine_threadsafe(self._revoked(partitions, True), self.loop)
        offsets = future.result()
        if offsets and self.fatal is None:
            self._commit_sync(offsets)

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        asyncio.run_coroutine_threadsafe(self._revoked(partitions, False), self.loop).result()

    async def _assigned(
        self, partitions: list[TopicPartition], committed: list[TopicPartition]
    ) -> None:
        finished_before = {
            (tp.topic, tp.partition): decode_finished(tp.offset, tp.metadata)
            for tp in committed
            if tp.offset >= 0
        }
        for tp in partitions:
            key = (tp.topic, tp.partition)
            self.partitions[key] = PartitionOffsets(
                tp.topic, tp.partition, finished_before.get(key)
            )
        self.metrics.rebalances.labels(self.name, "assigned").inc(len(partitions))
        log.info("assigned %s", _names(partitions))
        await self._run_hooks(self.service.assigned_hooks, partitions)

    async def _run_hooks(
        self, hooks: list[PartitionsHook], partitions: list[TopicPartition]
    ) -> None:
        names = [(tp.topic, tp.partition) for tp in partitions]
        for hook in hooks:
            try:
                await hook(names)
            except Exception as exc:  # state that cannot be restored must not be guessed
                self._fail(exc)

    async def _revoked(self, partitions: list[TopicPartition], drain: bool) -> list[TopicPartition]:
        """Drop unstarted work of the partitions, drain started work, return offsets."""
        parts = [
            p
            for tp in partitions
            if (p := self.partitions.get((tp.topic, tp.partition))) is not None
        ]
        for part in parts:
            part.revoked = True
        deadline = time.monotonic() + self.settings.drain_timeout_seconds
        busy = drain and self.fatal is None and any(p.in_progress > 0 for p in parts)
        while busy and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
            busy = self.fatal is None and any(p.in_progress > 0 for p in parts)
        offsets = self._committable(parts, force=True) if drain else []
        for part in parts:
            tp = (part.topic, part.partition)
            del self.partitions[tp]
            self.paused.discard(tp)
            with contextlib.suppress(KeyError):
                self.metrics.consumer_lag.remove(self.name, part.topic, str(part.partition))
        await self._run_hooks(self.service.revoked_hooks, partitions)
        kind = "revoked" if drain else "lost"
        self.metrics.rebalances.labels(self.name, kind).inc(len(partitions))
        log.info("%s %s", kind, _names(partitions))
        return offsets


def _left(deadline: float) -> float:
    return max(0.0, deadline - time.monotonic())


def _key_text(msg: Message) -> str | None:
    key = msg.key()
    if isinstance(key, bytes):
        return key.decode("utf-8", "replace")
    return key


def _names(partitions: list[TopicPartition]) -> str:
    return ", ".join(f"{tp.topic}[{tp.partition}]" for tp in partitions) or "nothing"
