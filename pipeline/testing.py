"""Run a Service's handlers in memory, through the real runtime.

:class:`TestService` wires the runtime's ports (:mod:`pipeline.runtime.ports`) to an
in-memory broker and runs the service with its real lanes, retries, dead letters,
backpressure and commits; only Kafka is replaced. Feed it events, await what the
handlers emit and what they dead-letter, and inspect what would be committed. A state
store attached to the service (:class:`~pipeline.state.ChangelogStore`) restores from
the memory broker's changelog topic, not from Kafka::

    from pipeline.testing import TestService

    async def test_echo() -> None:
        async with TestService(service) as svc:
            await svc.send("message_received", {...}, conversation_id="c1")
            reply = await svc.next_output("response_ready")
        assert reply["text"] == "hi"

Topics get their partition counts from the topic definitions, and keys are placed with
Kafka's murmur2 partitioner, so a conversation lands where it would on a real broker.
With ``processing_guarantee="exactly_once"`` the broker keeps transactions (open records
held back from read_committed readers, aborted ones skipped, fencing by transactional
id), and the outputs a test sees are the committed ones.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from types import TracebackType
from typing import Any

from confluent_kafka import KafkaError, KafkaException, TopicPartition
from prometheus_client import CollectorRegistry

from pipeline.config import Settings
from pipeline.events.model import Event, Metadata
from pipeline.observability.tracing import child_traceparent
from pipeline.partitioner import partition_for
from pipeline.runtime.headers import event_headers
from pipeline.runtime.ports import AckCallback, CommitCallback, Headers, PartitionsCallback
from pipeline.runtime.runner import Runner
from pipeline.runtime.service import Service
from pipeline.state import ChangelogStore, decode_value
from pipeline.state.changelog import Restored
from pipeline.topology import load_settings_topology

__all__ = [
    "MemoryBroker",
    "MemoryRecord",
    "MemoryTransaction",
    "MemoryTransactionalProducer",
    "MemoryTransport",
    "TestService",
    "state_stores",
]

TEST_SETTINGS: dict[str, Any] = {
    "metrics_port": 0,
    "retry_backoff_initial_seconds": 0.001,
    "retry_backoff_max_seconds": 0.01,
}


class MemoryRecord:
    """A record in the memory broker, read as confluent-kafka's ``Message`` is."""

    __slots__ = (
        "_headers",
        "_key",
        "_offset",
        "_partition",
        "_timestamp",
        "_topic",
        "_value",
        "transaction",
    )

    def __init__(
        self,
        topic: str,
        partition: int,
        offset: int,
        key: str | bytes | None,
        value: bytes | None,
        headers: Headers,
    ) -> None:
        self._topic = topic
        self._partition = partition
        self._offset = offset
        self._key = key.encode() if isinstance(key, str) else key
        self._value = value
        self._headers = [(k, v.encode() if isinstance(v, str) else v) for k, v in headers]
        self._timestamp = int(time.time() * 1000)
        self.transaction: MemoryTransaction | None = None  # None: not transactional

    @property
    def visible(self) -> bool:
        """Whether a read_committed reader sees it (now or, if its transaction is open,
        once it commits)."""
        return self.transaction is None or self.transaction.state == "committed"

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def key(self) -> bytes | None:
        return self._key

    def value(self) -> bytes | None:
        return self._value

    def headers(self) -> list[tuple[str, str | bytes | None]]:
        return list(self._headers)

    def error(self) -> KafkaError | None:
        return None

    def timestamp(self) -> tuple[int, int]:
        return 1, self._timestamp  # TIMESTAMP_CREATE_TIME

    def __repr__(self) -> str:
        return f"MemoryRecord({self._topic}[{self._partition}]@{self._offset}, key={self._key!r})"


class MemoryTransaction:
    """One transaction of a transactional producer: its records and offsets become
    visible together on commit; on abort, never."""

    __slots__ = ("group_offsets", "state")

    def __init__(self) -> None:
        self.state = "open"  # open, committed or aborted
        self.group_offsets: dict[str, list[TopicPartition]] = {}


class MemoryBroker:
    """Topics as lists of records per partition, and each group's committed offsets.

    Transactions as Kafka keeps them: records of an open transaction sit in the log
    where read_committed readers stop; an aborted one's are skipped; a newer producer
    with the same transactional id fences the older one. ``fail_next_commit`` makes the
    next transaction commit fail with an error (to test aborts).

    Thread-safe: the runtime's consumer thread reads while the loop appends.
    """

    def __init__(self, partitions_of: Callable[[str], int] = lambda _topic: 1) -> None:
        self._partitions_of = partitions_of
        self._topics: dict[str, list[list[MemoryRecord]]] = {}
        self.offsets: dict[tuple[str, str, int], TopicPartition] = {}
        self.changed = threading.Condition()
        # While not None, acknowledgements wait here instead of reaching the producer.
        self.held_acks: list[tuple[AckCallback, MemoryRecord]] | None = None
        self.epochs: dict[str, int] = {}  # transactional id -> its current producer's epoch
        self.open_transactions: dict[str, MemoryTransaction] = {}
        self.commit_failures: list[KafkaError] = []
        self.transactions = {"committed": 0, "aborted": 0}

    def fail_next_commit(self, error: KafkaError) -> None:
        """The next transaction commit raises ``KafkaException(error)`` (and fails
        the transaction as Kafka would, for an abortable error)."""
        self.commit_failures.append(error)

    def hold_acknowledgements(self) -> None:
        """Keep produced records unacknowledged until :meth:`release_acknowledgements`."""
        self.held_acks = []

    def release_acknowledgements(self) -> None:
        """Acknowledge every record held back (call from the event loop)."""
        held, self.held_acks = self.held_acks or [], None
        for on_ack, record in held:
            on_ack(None, record)

    def partitions(self, topic: str) -> list[list[MemoryRecord]]:
        with self.changed:
            return self._partitions(topic)

    def _partitions(self, topic: str) -> list[list[MemoryRecord]]:
        parts = self._topics.get(topic)
        if parts is None:
            parts = self._topics[topic] = [[] for _ in range(self._partitions_of(topic))]
        return parts

    def append(
        self,
        topic: str,
        key: str | bytes | None,
        value: bytes | None,
        headers: Headers = (),
        partition: int | None = None,
        transaction: MemoryTransaction | None = None,
    ) -> MemoryRecord:
        """Store a record on its key's partition (murmur2, as the runtime's producer)."""
        with self.changed:
            parts = self._partitions(topic)
            if partition is None:
                partition = 0 if key is None else partition_for(key, len(parts))
            log = parts[partition]
            record = MemoryRecord(topic, partition, len(log), key, value, headers)
            record.transaction = transaction
            log.append(record)
            self.changed.notify_all()
        return record

    def records(self, topic: str, *, committed: bool = False) -> list[MemoryRecord]:
        """Every record of a topic, partition by partition, each in offset order; with
        ``committed``, only what a read_committed reader sees."""
        with self.changed:
            return [
                r for log in self._topics.get(topic, []) for r in log if not committed or r.visible
            ]

    def end_transaction(self, transaction: MemoryTransaction, commit: bool) -> None:
        with self.changed:
            transaction.state = "committed" if commit else "aborted"
            self.transactions[transaction.state] += 1
            if commit:
                for group, offsets in transaction.group_offsets.items():
                    self._commit(group, offsets)
            self.changed.notify_all()

    def commit(self, group: str, offsets: Sequence[TopicPartition]) -> None:
        with self.changed:
            self._commit(group, offsets)

    def _commit(self, group: str, offsets: Sequence[TopicPartition]) -> None:
        for tp in offsets:
            self.offsets[(group, tp.topic, tp.partition)] = (
                TopicPartition(tp.topic, tp.partition, tp.offset)
                if tp.metadata is None
                else TopicPartition(tp.topic, tp.partition, tp.offset, tp.metadata)
            )

    def committed(self, group: str, topic: str, partition: int) -> TopicPartition:
        """The group's committed position, or offset -1001 (none) before any commit."""
        with self.changed:
            found = self.offsets.get((group, topic, partition))
        return found if found is not None else TopicPartition(topic, partition)


class MemoryConsumer:
    """A group member that owns every partition of its topics (assigned at first fetch)."""

    def __init__(
        self,
        broker: MemoryBroker,
        group: str,
        on_commit: CommitCallback,
        *,
        read_committed: bool = False,
    ) -> None:
        self.broker = broker
        self.group = group
        self.read_committed = read_committed
        self.on_commit = on_commit
        self.topics: list[str] = []
        self.assigned: list[TopicPartition] = []
        self.paused: set[tuple[str, int]] = set()
        self.positions: dict[tuple[str, int], int] = {}  # the next offset to fetch
        self.fetches = 0
        self._callbacks: tuple[PartitionsCallback, PartitionsCallback, PartitionsCallback]

    def subscribe(
        self,
        topics: list[str],
        *,
        on_assign: PartitionsCallback,
        on_revoke: PartitionsCallback,
        on_lost: PartitionsCallback,
    ) -> None:
        self.topics = list(topics)
        self._callbacks = (on_assign, on_revoke, on_lost)

    def consume(self, max_records: int, timeout: float) -> list[MemoryRecord]:
        self.fetches += 1
        if not self.assigned and self.topics:
            self._assign()
        batch = self._take(max_records)
        if not batch:
            with self.broker.changed:
                self.broker.changed.wait(timeout)
            batch = self._take(max_records)
        return batch

    def _assign(self) -> None:
        partitions = [
            TopicPartition(topic, p)
            for topic in self.topics
            for p in range(len(self.broker.partitions(topic)))
        ]
        for tp in partitions:
            committed = self.broker.committed(self.group, tp.topic, tp.partition).offset
            self.positions[(tp.topic, tp.partition)] = max(committed, 0)
        self.assigned = partitions
        self._callbacks[0](partitions)

    def _take(self, max_records: int) -> list[MemoryRecord]:
        batch: list[MemoryRecord] = []
        for tp in self.assigned:
            where = (tp.topic, tp.partition)
            if where in self.paused:
                continue
            log = self.broker.partitions(tp.topic)[tp.partition]
            start = self.positions[where]
            taken = log[start : start + max_records - len(batch)]
            if self.read_committed:
                taken = self._stable(taken)
                self.positions[where] = start + len(taken)
                batch.extend(r for r in taken if r.visible)
            else:
                self.positions[where] = start + len(taken)
                batch.extend(taken)
            if len(batch) >= max_records:
                break
        return batch

    def _stable(self, records: list[MemoryRecord]) -> list[MemoryRecord]:
        """The records before the first one of an open transaction (Kafka's last stable
        offset); aborted ones among them are passed over."""
        for i, record in enumerate(records):
            if record.transaction is not None and record.transaction.state == "open":
                return records[:i]
        return records

    def committed(self, partitions: list[TopicPartition], timeout: float) -> list[TopicPartition]:
        return [self.broker.committed(self.group, tp.topic, tp.partition) for tp in partitions]

    def commit(self, offsets: list[TopicPartition], *, asynchronous: bool) -> None:
        self.broker.commit(self.group, offsets)
        if asynchronous:
            self.on_commit(None, offsets)

    def pause(self, partitions: list[TopicPartition]) -> None:
        self.paused.update((tp.topic, tp.partition) for tp in partitions)

    def resume(self, partitions: list[TopicPartition]) -> None:
        self.paused.difference_update((tp.topic, tp.partition) for tp in partitions)

    def high_watermark(self, topic: str, partition: int) -> int | None:
        return len(self.broker.partitions(topic)[partition])

    def close(self) -> None:
        if self.assigned:
            assigned, self.assigned = self.assigned, []
            self._callbacks[1](assigned)

    def group_metadata(self) -> tuple[str, int]:
        return (self.group, id(self))

    def seek(self, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            self.positions[(tp.topic, tp.partition)] = tp.offset


class MemoryProducer:
    """Appends to the memory broker; each acknowledgement runs on the loop soon after."""

    def __init__(self, broker: MemoryBroker, loop: asyncio.AbstractEventLoop) -> None:
        self.broker = broker
        self.loop = loop

    def produce_nowait(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | str | None,
        headers: Headers,
        on_ack: AckCallback,
    ) -> bool:
        record = self.broker.append(topic, key, value, headers)
        if self.broker.held_acks is not None:
            self.broker.held_acks.append((on_ack, record))
        else:
            self.loop.call_soon(on_ack, None, record)
        return True

    async def produce(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | str | None,
        headers: Headers,
        on_ack: AckCallback,
    ) -> None:
        self.produce_nowait(topic, value, key, headers, on_ack)

    async def send(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | str | None = None,
        headers: Headers = (),
    ) -> asyncio.Future[None]:
        future: asyncio.Future[None] = self.loop.create_future()
        self.produce_nowait(topic, value, key, headers, lambda _err, _rec: future.set_result(None))
        return future

    async def flush(self, seconds: float) -> int:
        await asyncio.sleep(0)  # let the acknowledgements queued with call_soon run
        return 0

    async def aclose(self, flush_seconds: float) -> int:
        return await self.flush(flush_seconds)


class MemoryTransactionalProducer(MemoryProducer):
    """A producer with a transactional id: records go into its open transaction.

    The transaction calls behave as librdkafka's: a producer fenced by a newer one with
    the same id fails with a fatal ``_FENCED`` error, an injected commit failure
    (``MemoryBroker.fail_next_commit``) leaves the transaction to be aborted.
    """

    def __init__(
        self, broker: MemoryBroker, loop: asyncio.AbstractEventLoop, transactional_id: str
    ) -> None:
        super().__init__(broker, loop)
        self.transactional_id = transactional_id
        self.epoch = -1
        self.current: MemoryTransaction | None = None

    def produce_nowait(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | str | None,
        headers: Headers,
        on_ack: AckCallback,
    ) -> bool:
        if self.current is None:
            raise KafkaException(KafkaError(KafkaError._STATE, "no transaction is open"))
        record = self.broker.append(topic, key, value, headers, transaction=self.current)
        if self.broker.held_acks is not None:
            self.broker.held_acks.append((on_ack, record))
        else:
            self.loop.call_soon_threadsafe(on_ack, None, record)
        return True

    def _check_epoch(self) -> None:
        if self.broker.epochs.get(self.transactional_id) != self.epoch:
            raise KafkaException(
                KafkaError(KafkaError._FENCED, "fenced by a newer producer", fatal=True)
            )

    def init_transactions(self, timeout: float) -> None:
        broker = self.broker
        with broker.changed:
            self.epoch = broker.epochs.get(self.transactional_id, -1) + 1
            broker.epochs[self.transactional_id] = self.epoch
            zombie = broker.open_transactions.pop(self.transactional_id, None)
        if zombie is not None:
            broker.end_transaction(zombie, commit=False)

    def begin_transaction(self) -> None:
        self._check_epoch()
        self.current = MemoryTransaction()
        with self.broker.changed:
            self.broker.open_transactions[self.transactional_id] = self.current

    def send_offsets_to_transaction(
        self, offsets: list[TopicPartition], group_metadata: Any, timeout: float
    ) -> None:
        self._check_epoch()
        assert self.current is not None, "begin a transaction first"
        group, _member = group_metadata
        self.current.group_offsets.setdefault(group, []).extend(offsets)

    def commit_transaction(self, timeout: float) -> None:
        self._check_epoch()
        assert self.current is not None, "begin a transaction first"
        if self.broker.commit_failures:
            raise KafkaException(self.broker.commit_failures.pop(0))
        self._end(commit=True)

    def abort_transaction(self, timeout: float) -> None:
        self._check_epoch()
        if self.current is not None:
            self._end(commit=False)

    def _end(self, *, commit: bool) -> None:
        current, self.current = self.current, None
        assert current is not None
        with self.broker.changed:
            self.broker.open_transactions.pop(self.transactional_id, None)
        self.broker.end_transaction(current, commit)


class MemoryTransport:
    """The runtime's ports wired to one :class:`MemoryBroker`."""

    def __init__(self, broker: MemoryBroker) -> None:
        self.broker = broker
        self.consumers: list[MemoryConsumer] = []
        self.producers: list[MemoryProducer] = []

    def consumer(self, config: dict[str, Any], on_commit: CommitCallback) -> MemoryConsumer:
        consumer = MemoryConsumer(
            self.broker,
            str(config["group.id"]),
            on_commit,
            read_committed=config.get("isolation.level") == "read_committed",
        )
        self.consumers.append(consumer)
        return consumer

    def producer(self, config: dict[str, Any], loop: asyncio.AbstractEventLoop) -> MemoryProducer:
        producer = MemoryProducer(self.broker, loop)
        self.producers.append(producer)
        return producer

    def transactional_producer(
        self, config: dict[str, Any], loop: asyncio.AbstractEventLoop
    ) -> MemoryTransactionalProducer:
        producer = MemoryTransactionalProducer(self.broker, loop, str(config["transactional.id"]))
        self.producers.append(producer)
        return producer


def state_stores(service: Service) -> list[ChangelogStore]:
    """The state stores attached to ``service`` (``store.attach(service)``)."""
    found = (getattr(hook, "__self__", None) for hook in service.assigned_hooks)
    return [store for store in found if isinstance(store, ChangelogStore)]


class TestService:
    """Run ``service`` in memory while the ``async with`` block lasts.

    ``overrides`` replace settings for the run (``max_retries=1``,
    ``max_buffered_per_partition=4``, ...); by default the health endpoint is off and
    retries back off for milliseconds. Leaving the block shuts the service down as
    SIGTERM would (drain, commit, close) and raises what stopped it, if anything did.
    Pass the ``broker`` of an earlier run to start where it committed, as a restarted
    or rebalanced service would. The runtime's metrics of each run go to a fresh
    ``registry`` (the service's own metrics stay in ``service.registry``), so one service
    can be run by many tests.
    """

    __test__ = False  # not a pytest test class

    def __init__(
        self, service: Service, *, broker: MemoryBroker | None = None, **overrides: Any
    ) -> None:
        self.service = service
        self.settings: Settings = service.settings.model_copy(update={**TEST_SETTINGS, **overrides})
        topology = load_settings_topology(self.settings)
        counts = {self.settings.topic(t.name): t.partitions for t in topology}
        self.broker = broker or MemoryBroker(lambda topic: counts.get(topic, 1))
        self.transport = MemoryTransport(self.broker)
        self.registry = CollectorRegistry()
        self.runner = Runner(
            service, settings=self.settings, transport=self.transport, registry=self.registry
        )
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._seen: dict[str, int] = {}
        for store in state_stores(service):
            store._read = self._changelog_reader(store.changelog)

    async def __aenter__(self) -> TestService:
        self._task = asyncio.create_task(self.runner.run(self._stop), name="test-service")
        await self.until(lambda: self.runner.ready, "the service to start consuming")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        if self._task is not None:
            await self._task

    # ------------------------------------------------------------------ feeding

    async def send(
        self,
        event_type: str,
        data: Mapping[str, Any],
        *,
        conversation_id: str = "conversation-1",
        tenant_id: str = "tenant-1",
        traceparent: str | None = None,
    ) -> Event:
        """Put one event on its topic, keyed by its conversation; returns it."""
        metadata = Metadata.new(event_type, conversation_id, tenant_id=tenant_id, producer="test")
        event = Event(metadata, dict(data))
        value = self.runner.serde.encode(event)
        headers = event_headers(event_type, metadata.event_id_text, child_traceparent(traceparent))
        self.broker.append(self.settings.topic(event_type), conversation_id, value, headers)
        return event

    async def send_event(self, event: Event, *, traceparent: str | None = None) -> None:
        """Put an event on its topic as it is: its metadata kept (a recorded event, say)."""
        headers = event_headers(
            event.type, event.metadata.event_id_text, child_traceparent(traceparent)
        )
        value = self.runner.serde.encode(event)
        self.broker.append(self.settings.topic(event.type), event.conversation_id, value, headers)

    async def send_raw(
        self, event_type: str, value: bytes | None, *, conversation_id: str = "conversation-1"
    ) -> None:
        """Put raw bytes on an event type's topic (an undecodable record, say)."""
        self.broker.append(self.settings.topic(event_type), conversation_id, value)

    # ------------------------------------------------------------------ awaiting

    async def settle(self, seconds: float = 5.0) -> None:
        """Wait until every record on the service's topics is finished: handled, its
        outputs acknowledged, or dead-lettered."""
        await self.until(self._settled, "every record to be finished", seconds)

    def _settled(self) -> bool:
        runner = self.runner
        if runner.processor.unacked or len(runner.lanes):
            return False
        for topic in runner.routes:
            for partition, log in enumerate(self.broker.partitions(topic)):
                part = runner.partitions.get((topic, partition))
                if log and (part is None or part.watermark() != len(log)):
                    return False
        return True

    def outputs(self, event_type: str | None = None) -> list[Event]:
        """The events the handlers emitted (of one type), in each partition's order."""
        topics = [event_type] if event_type else self._emitted_types()
        return [
            self.runner.serde.decode(record.value() or b"")
            for topic in topics
            for record in self._records(self.settings.topic(topic))
        ]

    async def next_output(self, event_type: str, seconds: float = 5.0) -> Event:
        """The next event of ``event_type`` emitted since the last call, waiting for it."""
        record = await self._next(self.settings.topic(event_type), f"a {event_type}", seconds)
        return self.runner.serde.decode(record.value() or b"")

    async def next_dead_letter(self, seconds: float = 5.0) -> dict[str, Any]:
        """The next dead letter since the last call, waiting for it."""
        topic = self.settings.topic(self.settings.dead_letter_topic)
        record = await self._next(topic, "a dead letter", seconds)
        return self.runner.serde.decode_record(record.value() or b"")[1]

    async def _next(self, topic: str, what: str, seconds: float) -> MemoryRecord:
        seen = self._seen.get(topic, 0)
        await self.until(lambda: len(self._records(topic)) > seen, what, seconds)
        self._seen[topic] = seen + 1
        return self._records(topic)[seen]

    def _records(self, topic: str) -> list[MemoryRecord]:
        """What a reader of ``topic`` sees: in exactly-once mode, committed records only."""
        committed = self.settings.processing_guarantee == "exactly_once"
        return self.broker.records(topic, committed=committed)

    def dead_letters(self) -> list[dict[str, Any]]:
        """The dead letters written, as ``pipeline.events.DeadLetter`` records."""
        topic = self.settings.topic(self.settings.dead_letter_topic)
        return [
            self.runner.serde.decode_record(record.value() or b"")[1]
            for record in self._records(topic)
        ]

    # ------------------------------------------------------------------ commits

    def committable(self) -> dict[tuple[str, int], int]:
        """What a commit would write now: each partition's watermark, by (event type,
        partition)."""
        return {
            (self._logical(tp.topic), tp.partition): tp.offset for tp in self.runner.committer.due()
        }

    def committed(self) -> dict[tuple[str, int], TopicPartition]:
        """What the service committed, by (event type, partition)."""
        group = self.runner.group_id
        return {
            (self._logical(topic), partition): tp
            for (g, topic, partition), tp in self.broker.offsets.items()
            if g == group
        }

    async def commit(self) -> None:
        """Commit now, as the periodic commit does."""
        await self.runner.committer.commit_tick(self.runner.on_consumer_thread)

    def fetched(self, event_type: str, partition: int) -> int:
        """How many records of the partition the consumer fetched so far."""
        [consumer] = self.transport.consumers
        return consumer.positions.get((self.settings.topic(event_type), partition), 0)

    async def fetches(self, count: int) -> None:
        """Wait until the runtime fetched ``count`` more times."""
        [consumer] = self.transport.consumers
        wanted = consumer.fetches + count
        await self.until(lambda: consumer.fetches >= wanted, f"{count} more fetches")

    def paused(self) -> set[tuple[str, int]]:
        """Partitions the runtime paused for backpressure, by (event type, partition)."""
        return {(self._logical(t), p) for t, p in self.runner.paused}

    # ------------------------------------------------------------------ helpers

    def _changelog_reader(
        self, changelog: str
    ) -> Callable[[list[str], dict[int, int | None]], dict[int, Restored]]:
        """A state store's restore, from the memory broker's ``changelog`` topic."""
        topic = self.settings.topic(changelog)

        def read(_topics: list[str], starts: dict[int, int | None]) -> dict[int, Restored]:
            logs = self.broker.partitions(topic)
            restored: dict[int, Restored] = {}
            for partition, start in starts.items():
                log = logs[partition] if partition < len(logs) else []
                begin = start if start is not None and start <= len(log) else 0
                result = restored[partition] = Restored(partition, begin, len(log), begin == 0)
                for record in log[begin:]:
                    key, value = record.key(), record.value()
                    if key is None or not record.visible:
                        continue
                    result.values[key.decode()] = None if value is None else decode_value(value)
                    result.records += 1
            return restored

        return read

    def _emitted_types(self) -> list[str]:
        if self.service.emits is not None:
            return list(self.service.emits)
        return self.runner.serde.catalog.event_types

    def _logical(self, topic: str) -> str:
        return topic.removeprefix(self.settings.topic_prefix)

    async def until(self, done: Callable[[], bool], what: str, seconds: float = 5.0) -> None:
        """Wait until ``done()`` is true; TimeoutError naming ``what`` after ``seconds``."""
        deadline = time.monotonic() + seconds
        while not done():
            if self._task is not None and self._task.done():
                await self._task  # raises what stopped the service
                raise RuntimeError(f"the service stopped while waiting for {what}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"no {what} within {seconds:g}s")
            await asyncio.sleep(0.002)
