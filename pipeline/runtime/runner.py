"""The poll loop and its wiring.

Threads: one thread runs every consumer call (fetching, commits, pause/resume, and the
rebalance callbacks a fetch runs); everything else, handlers and all bookkeeping, runs
on the asyncio loop. The loop fetches a batch (:meth:`Runner._fetch`), tracks each
record's offset and queues it in its conversation's lane, and pauses partitions whose
unfinished work piles up. The other concerns have their own modules:

- ``lanes``: per-conversation lanes and the worker pool;
- ``processing``: one record's handling (decode, attempts, retries, outputs, dead letter);
- ``committer``: watermarks, commit metadata and lag, as one commit sequence;
- ``transaction``: exactly-once mode's transactional producer, its gate and fencing;
- ``rebalance``: partitions assigned, revoked and lost;
- ``shutdown``: drain, final commit and close, within the drain deadline;
- ``ports``: the consumer and producer calls, wired to confluent-kafka
  (``kafka_transport``) or to memory (``pipeline.testing``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from confluent_kafka import KafkaError, KafkaException, TopicPartition
from prometheus_client import CollectorRegistry

from pipeline.config import Settings
from pipeline.events.catalog import load_settings_catalog
from pipeline.events.serde import SingleObjectSerde
from pipeline.events.wire import make_serde
from pipeline.observability.consumer_probes import ConsumerProbes
from pipeline.observability.health import HealthServer
from pipeline.observability.kafka_logs import ClusterConnection
from pipeline.observability.metrics import RuntimeMetrics
from pipeline.runtime.committer import TP, Committer
from pipeline.runtime.event_types import check_event_types
from pipeline.runtime.kafka_thread import KafkaThread
from pipeline.runtime.kafka_transport import KafkaTransport
from pipeline.runtime.lanes import Lanes
from pipeline.runtime.offset_tracker import PartitionOffsets
from pipeline.runtime.ports import ProducerPort, Record, Transport
from pipeline.runtime.processing import RecordProcessor, Route, Work
from pipeline.runtime.producer import producer_config, transactional_config
from pipeline.runtime.publisher import Publisher
from pipeline.runtime.rebalance import Rebalancer
from pipeline.runtime.run_state import RunState
from pipeline.runtime.running import Running
from pipeline.runtime.shutdown import close_unstarted, shut_down
from pipeline.runtime.transaction import (
    GatedProducer,
    Transaction,
    TransactionGate,
    exactly_once,
    transactional_id,
)
from pipeline.topology import load_settings_topology

if TYPE_CHECKING:
    from pipeline.runtime.definition import Background, ServiceDefinition

log = logging.getLogger("pipeline.runtime")

POLL_BATCH = 500  # records taken from the client at most per fetch
POLL_TIMEOUT_SECONDS = 0.1  # longest wait for a first record; bounds how late a stop is seen


class Runner:
    """Runs one Service until stopped.

    ``transport`` makes the consumer and producer (confluent-kafka by default);
    ``settings`` and ``registry`` (for the runtime's metrics) replace the service's own.
    """

    def __init__(
        self,
        service: ServiceDefinition,
        *,
        settings: Settings | None = None,
        transport: Transport | None = None,
        registry: CollectorRegistry | None = None,
    ) -> None:
        settings = settings or service.settings
        self.settings = settings
        self.name = service.name
        self.service = service
        self.group_id = f"{settings.topic_prefix}{service.name}"
        catalog = load_settings_catalog(settings)
        check_event_types(
            self.name,
            [h.event_type for h in service.handlers],
            service.emits,
            catalog,
            load_settings_topology(settings).names,
        )
        self.serde: SingleObjectSerde = make_serde(settings, catalog)
        self.registry = service.registry if registry is None else registry
        self.metrics = RuntimeMetrics(self.registry, self.name)
        self.transport: Transport = transport or KafkaTransport()
        self.state = RunState(self.name)
        self.routes = {
            settings.topic(h.event_type): Route(
                h, self.metrics.for_handler(settings.topic(h.event_type), h.name, h.event_type)
            )
            for h in service.handlers
        }
        self.partitions: dict[TP, PartitionOffsets] = {}
        self.paused: set[TP] = set()
        self.processor = RecordProcessor(
            name=self.name,
            settings=settings,
            serde=self.serde,
            metrics=self.metrics,
            state=self.state,
            routes=self.routes.values(),
            emits=frozenset(catalog.event_types if service.emits is None else service.emits),
            emits_declared=service.emits is not None,
        )
        self.lanes = Lanes(self.state, self.processor.process)
        self.committer = Committer(self.name, self.partitions, self.metrics, self.state)
        self.rebalancer = Rebalancer(
            name=self.name,
            partitions=self.partitions,
            paused=self.paused,
            committer=self.committer,
            metrics=self.metrics,
            state=self.state,
            drain_timeout=settings.drain_timeout_seconds,
            assigned_hooks=service.assigned_hooks,
            revoked_hooks=service.revoked_hooks,
        )
        self.ready = False
        self.stop_seen: float | None = None  # when the poll loop was told to stop
        self.transaction_thread: KafkaThread | None = None
        self.durable_producer: ProducerPort | None = None  # exactly-once: outside the txn
        self.connection = ClusterConnection(settings.bootstrap_servers)
        self.probes = ConsumerProbes(
            self.connection,
            down_limit=settings.broker_down_not_ready_seconds,
            fatal=lambda: self.state.fatal,
            stuck_limit=settings.liveness_stuck_seconds,
        )
        self.metrics.poll_stalled.set_function(self.probes.stalled_for)

    # ---------------------------------------------------------------- lifecycle

    async def run(self, stop: asyncio.Event) -> None:
        self.loop = asyncio.get_running_loop()
        self.metrics.in_flight.set_function(lambda: self.lanes.busy)
        self.lanes.start(self.settings.max_in_flight, self.name)
        consumer_config = self._consumer_config()
        self.consumer = self.transport.consumer(consumer_config, self.committer.on_commit)
        self.poller = KafkaThread(f"{self.name}-consumer")
        self.committer.attach(self.consumer, self.loop)
        self.rebalancer.attach(self.consumer, self.loop, self.poller)
        self._watch(self.poller, "consumer")
        if exactly_once(self.settings):
            if not await self._start_transactions(consumer_config, stop):
                await close_unstarted(self)
                return
        else:
            self.producer = self.transport.producer(
                {
                    **producer_config(
                        self.settings, f"{self.name}-producer", self.service.producer_defaults
                    ),
                    **self.connection.client_config(),
                },
                self.loop,
            )
            self.processor.attach(self.producer)
            self.publisher = Publisher(self.settings, self.producer, self.serde, self.name)
            self.durable = self.publisher
        self.service.running = Running(self.partitions, self.durable)
        health = self._start_health_server()
        self.consumer.subscribe(
            list(self.routes),
            on_assign=self.rebalancer.on_assign,
            on_revoke=self.rebalancer.on_revoke,
            on_lost=self.rebalancer.on_lost,
        )
        log.info("service %s consuming %s as group %s", self.name, list(self.routes), self.group_id)
        committer = asyncio.create_task(
            self.committer.run_periodically(
                self.settings.commit_interval_seconds,
                self.on_consumer_thread,
                before=self.processor.flush_counts,
            )
        )
        background = [
            asyncio.create_task(self._supervise(task)) for task in self.service.background_tasks
        ]
        ticker = asyncio.create_task(self.probes.tick())
        state = self.state
        polling = asyncio.create_task(self._poll(stop), name=f"{self.name}-poll")
        try:
            await self._until_stopped(polling, stop)
        finally:
            self.ready = self.probes.consuming = False
            ticker.cancel()
            committer.cancel()
            # The background tasks (the clients handlers use: a model's, a channel's) are
            # stopped once the handlers are done, inside the shutdown.
            await shut_down(self, background)
            self.service.running = None
            if health is not None:
                health.stop()
        if state.fatal is not None:
            raise state.fatal

    def _watch(self, thread: KafkaThread, kind: str) -> None:
        self.probes.watch(thread)
        blocked = self.metrics.kafka_call_blocked.labels(self.name, kind)
        blocked.set_function(lambda: thread.blocked_for)

    async def _poll(self, stop: asyncio.Event) -> None:
        """The poll loop: fetch, dispatch, pause or resume, until stopped."""
        state, probes, rebalancer = self.state, self.probes, self.rebalancer
        while not stop.is_set() and state.fatal is None:
            batch, positions = await self._fetch()
            probes.fetched(len(batch))
            self.ready = True
            for msg in batch:
                self._dispatch(msg)
            if positions:
                self._advance(positions)
            self.processor.flush_counts()
            await self._apply_backpressure()
            if rebalancer.holding and time.monotonic() >= rebalancer.next_read:
                await self.on_consumer_thread(rebalancer.release_held)

    async def _until_stopped(self, polling: asyncio.Task[None], stop: asyncio.Event) -> None:
        """Wait for the poll loop; once ``stop`` is set, give it a moment to see it, then
        stop waiting for the consumer thread (a call stuck in the client must not keep a
        SIGTERM from being honoured)."""
        stopping = asyncio.create_task(stop.wait())
        try:
            await asyncio.wait({polling, stopping}, return_when=asyncio.FIRST_COMPLETED)
            self.stop_seen = time.monotonic()
            if not polling.done():
                patience = min(POLL_TIMEOUT_SECONDS * 10, self.settings.drain_timeout_seconds / 4)
                done, _ = await asyncio.wait({polling}, timeout=patience)
                if not done:
                    log.warning("the consumer thread is busy; stopping without waiting for it")
                    polling.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await polling
        finally:
            stopping.cancel()

    async def _start_transactions(
        self, consumer_config: dict[str, Any], stop: asyncio.Event
    ) -> bool:
        """Exactly-once mode: one transactional producer, its first transaction open.
        While Kafka cannot be reached this waits and tries again, as the consumer does;
        False when stopped first."""
        txn_id = transactional_id(self.settings, self.group_id, consumer_config)
        config = {
            **transactional_config(
                self.settings, f"{self.name}-producer", txn_id, self.service.producer_defaults
            ),
            **self.connection.client_config(),
        }
        producer = self.transport.transactional_producer(config, self.loop)
        self.producer = producer
        gate = TransactionGate()
        thread = self.transaction_thread = KafkaThread(f"{self.name}-transactions")
        self._watch(thread, "transactions")
        transaction = Transaction(
            producer,
            gate,
            transactional_id=txn_id,
            fail=self.state.fail,
            timeout=self.settings.kafka_call_timeout_seconds,
            thread=thread,
        )
        starting = asyncio.ensure_future(self.on_consumer_thread(transaction.start, stop.is_set))
        stopping = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
        if not starting.done() or not starting.result():
            return False
        gate.open()
        self.processor.attach(producer, transaction)
        self.publisher = Publisher(
            self.settings, GatedProducer(producer, gate), self.serde, self.name
        )
        # Records that must survive an abort (a journal of outside calls): outside it.
        plain = self.transport.producer(
            {
                **producer_config(
                    self.settings, f"{self.name}-durable", self.service.producer_defaults
                ),
                **self.connection.client_config(),
            },
            self.loop,
        )
        self.durable = Publisher(self.settings, plain, self.serde, self.name)
        self.durable_producer = plain
        self.committer.attach_transaction(
            transaction,
            on_abort=lambda: self.rebalancer.rewind(self.committer.reopen),
            flush_seconds=self.settings.drain_timeout_seconds,
        )
        return True

    async def _fetch(self) -> tuple[Sequence[Record], list[TopicPartition]]:
        """One fetch of records, on the consumer thread: the only place the loop fetches;
        with no record, the consumer's positions.

        A batch fetched while the partitions were handed back after an aborted transaction
        is dropped: the consumer reads those records again from the committed offsets.
        """
        rewinds, batch, positions = await self.loop.run_in_executor(self.poller, self._consume)
        if rewinds != self.rebalancer.rewinds:
            return (), []
        return batch, positions

    def _consume(self) -> tuple[int, Sequence[Record], list[TopicPartition]]:
        """The records the client has, as soon as it has one (on the consumer thread).

        librdkafka's batch consume returns only when the batch is full or its timeout has
        passed, so ``consume(POLL_BATCH, timeout)`` would hold a lone record for the whole
        timeout at every hop. Waiting for one record returns the moment it arrives; the
        rest of the batch is then whatever the client already holds, taken without
        waiting, so heavy traffic still comes in batches (the records that arrived while
        the loop handled the previous one). With no traffic this wakes once per timeout,
        as before. The rewind count is read here, on the consumer thread, where a
        hand-back runs whole.
        """
        rewinds = self.rebalancer.rewinds
        first = self.consumer.consume(1, POLL_TIMEOUT_SECONDS)
        if not first:
            # Idle: where the consumer stands, past any transaction marker it stepped over.
            return rewinds, first, self.rebalancer.positions()
        return rewinds, [*first, *self.consumer.consume(POLL_BATCH - 1, 0)], []

    def _consumer_config(self) -> dict[str, Any]:
        eos = {"isolation.level": "read_committed"} if exactly_once(self.settings) else {}
        return {
            "client.id": f"{self.name}-consumer",
            "auto.offset.reset": self.settings.auto_offset_reset,
            "isolation.level": "read_committed",
            "session.timeout.ms": 45000,
            **self.settings.consumer_config(),
            **eos,
            # The runtime's guarantees rest on these: never overridden.
            "group.id": self.group_id,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "partition.assignment.strategy": self.service.assignment_strategy,
            **self.connection.consumer_config(),  # logs, errors and statistics
        }

    async def _supervise(self, task: Background) -> None:
        """A background task that ends on an error stops the service."""
        try:
            await task(self.publisher)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.state.fail(exc)

    def _start_health_server(self) -> HealthServer | None:
        if not self.settings.metrics_port:
            return None
        server = HealthServer(
            self.registry,
            self.settings.metrics_host,
            self.settings.metrics_port,
            healthy=self.probes.healthy,
            ready=self.probes.ready,
        )
        server.start()
        return server

    # ---------------------------------------------------------------- dispatch

    def _dispatch(self, msg: Record) -> None:
        err = msg.error()
        if err is not None:
            if err.code() == KafkaError._PARTITION_EOF:
                return
            if err.fatal():
                self.state.fail(KafkaException(err))
            else:
                log.warning("consumer error: %s", err)
            return
        topic, partition = msg.topic() or "", msg.partition() or 0
        part = self.partitions.get((topic, partition))
        offset = msg.offset() or 0
        if part is None or part.held:
            if part is not None:
                part.hold_back(offset)  # fetched again once its committed offsets are read
            return
        if not part.received(offset):
            return  # an offset already tracked
        if offset in part.skip:
            part.skip.discard(offset)  # an earlier owner finished it: commit, don't repeat
            part.finished(offset)
            self.metrics.skipped.labels(self.name, topic).inc()
            return
        route = self.routes[topic]
        route.consumed += 1
        key = msg.key()
        lane_key = key if isinstance(key, bytes) else f"\0{topic}\0{partition}".encode()
        self.lanes.add(lane_key, Work(msg, part, route))

    def _advance(self, positions: list[TopicPartition]) -> None:
        """The consumer's positions after an empty fetch, every batch before it tracked:
        an idle partition's watermark moves past the transaction markers it ends with."""
        partitions = self.partitions
        for tp in positions:
            part = partitions.get((tp.topic, tp.partition))
            if part is not None:
                part.advance_to(tp.offset)

    async def _apply_backpressure(self) -> None:
        """Pause partitions with too much unfinished work, and held ones; resume them once
        the work halves (held ones once released)."""
        limit = self.settings.max_buffered_per_partition
        pause = [
            tp
            for tp, part in self.partitions.items()
            if tp not in self.paused and (part.buffered >= limit or part.held)
        ]
        resume = [
            tp
            for tp in self.paused
            if tp in self.partitions
            and self.partitions[tp].buffered <= limit // 2
            and not self.partitions[tp].held
        ]
        if not pause and not resume:
            return
        if await self.on_consumer_thread(self._pause_resume, pause, resume):
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

    async def on_consumer_thread(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run a consumer call on the consumer thread.

        The loop never calls the consumer itself: while a rebalance callback holds the
        consumer thread waiting for the loop, a consumer call from the loop could wait
        for that same callback, and neither would move.
        """
        return await self.loop.run_in_executor(self.poller, fn, *args)
