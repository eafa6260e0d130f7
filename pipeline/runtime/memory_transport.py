"""The runtime's ports wired to memory: the consumer, the producers and the transport that
makes them for a :class:`~pipeline.runtime.runner.Runner`.

They read and write a :class:`~pipeline.runtime.memory_broker.MemoryBroker`, so a
service's handlers run through the same lanes, retries, dead letters and commits as on
Kafka (:mod:`pipeline.in_memory` runs a whole service on it; ``pipeline.testing`` is the
users' face). Keys are placed with Kafka's murmur2 partitioner, so a conversation lands
where it would on a real broker. The transaction calls behave as librdkafka's: records of
an open transaction are held back from read_committed readers, aborted ones are skipped,
and a newer producer with the same transactional id fences the older one.
"""

from __future__ import annotations

import asyncio
from typing import Any

from confluent_kafka import KafkaError, KafkaException, TopicPartition

from pipeline.runtime.memory_broker import MemoryBroker, MemoryRecord, MemoryTransaction
from pipeline.runtime.ports import (
    AckCallback,
    CommitCallback,
    Headers,
    PartitionsCallback,
    Record,
)

# The broker's types, importable from here as before the broker had its own module.
__all__ = [
    "MemoryBroker",
    "MemoryConsumer",
    "MemoryProducer",
    "MemoryRecord",
    "MemoryTransaction",
    "MemoryTransactionalProducer",
    "MemoryTransport",
]


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
                batch.extend(r for r in taken if not r.control)
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
        if self.broker.committed_read_failures > 0:
            self.broker.committed_read_failures -= 1
            raise KafkaException(
                KafkaError(KafkaError._TIMED_OUT, "Failed to get committed offsets: timed out")
            )
        return [self.broker.committed(self.group, tp.topic, tp.partition) for tp in partitions]

    def position(self, partitions: list[TopicPartition]) -> list[TopicPartition]:
        return [
            TopicPartition(
                tp.topic, tp.partition, self.positions.get((tp.topic, tp.partition), -1001)
            )
            for tp in partitions
        ]

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
    ) -> asyncio.Future[Record]:
        future: asyncio.Future[Record] = self.loop.create_future()
        self.produce_nowait(topic, value, key, headers, lambda _err, rec: future.set_result(rec))
        return future

    async def flush(self, seconds: float) -> int:
        """Every record acknowledged when it returns, as librdkafka's flush: held
        acknowledgements too (their callbacks run here, the others just before)."""
        await asyncio.sleep(0)  # let the acknowledgements queued with call_soon run
        if self.broker.held_acks:
            self.broker.release_acknowledgements()
            self.broker.held_acks = []
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
        self._stall("init_transactions")
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
        self._stall("send_offsets_to_transaction")
        assert self.current is not None, "begin a transaction first"
        group, _member = group_metadata
        self.current.group_offsets.setdefault(group, []).extend(offsets)

    def commit_transaction(self, timeout: float) -> None:
        self._check_epoch()
        self._stall("commit_transaction")
        assert self.current is not None, "begin a transaction first"
        if self.broker.commit_failures:
            raise KafkaException(self.broker.commit_failures.pop(0))
        self._end(commit=True)

    def abort_transaction(self, timeout: float) -> None:
        self._check_epoch()
        self._stall("abort_transaction")
        if self.current is not None:
            self._end(commit=False)

    def _stall(self, call: str) -> None:
        """Block, as a client call that never returns, while the broker stalls ``call``
        (at most a minute, so a test that forgets to release it still ends)."""
        broker = self.broker
        if broker.stalled_call == call:
            broker.stalled.set()
            broker.unstall.wait(60.0)
            broker.stalled.clear()

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
