"""The memory broker: topics as lists of records per partition, transactions as Kafka keeps
them, each group's committed offsets, and the faults tests inject.

A record of an open transaction sits in the log where read_committed readers stop; an
aborted one's are skipped; a transaction's end writes a marker (a control record, which
takes an offset and is never handed to a consumer) to every partition it wrote. The
clients that read and write it, as the runtime's ports, are in
:mod:`pipeline.runtime.memory_transport`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

from confluent_kafka import KafkaError, TopicPartition

from pipeline.partitioner import partition_for
from pipeline.runtime.ports import AckCallback, Headers


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
        "control",
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
        self.control = False  # a transaction marker: takes an offset, never handed over

    @property
    def visible(self) -> bool:
        """Whether a read_committed reader sees it (now or, if its transaction is open,
        once it commits)."""
        if self.control:
            return False
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

    __slots__ = ("group_offsets", "state", "written")

    def __init__(self) -> None:
        self.state = "open"  # open, committed or aborted
        self.group_offsets: dict[str, list[TopicPartition]] = {}
        self.written: set[tuple[str, int]] = set()  # partitions that get its marker


class MemoryBroker:
    """Topics as lists of records per partition, and each group's committed offsets.

    Transactions as Kafka keeps them: records of an open transaction sit in the log
    where read_committed readers stop; an aborted one's are skipped; its end writes a
    marker (a control record, which takes an offset and is never handed to a consumer)
    to every partition it wrote; a newer producer with the same transactional id fences
    the older one.

    Faults, for tests: ``fail_next_commit`` makes the next transaction commit fail with an
    error (to test aborts); ``fail_committed_reads`` makes reads of committed offsets fail
    (a group coordinator that does not answer); ``stall`` makes a transaction call block
    until ``release_stalled`` (a client call that never returns).

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
        self.committed_read_failures = 0
        self.stalled_call: str | None = None
        self.stalled = threading.Event()  # set while a stalled call is blocked
        self.unstall = threading.Event()

    def fail_committed_reads(self, times: int) -> None:
        """The next ``times`` reads of committed offsets fail as a timeout would."""
        self.committed_read_failures = times

    def stall(self, call: str) -> None:
        """The next transaction call named ``call`` (``send_offsets_to_transaction``,
        ``commit_transaction``, ...) blocks until :meth:`release_stalled`."""
        self.unstall.clear()
        self.stalled_call = call

    def release_stalled(self) -> None:
        self.stalled_call = None
        self.unstall.set()

    def fail_next_commit(self, error: KafkaError) -> None:
        """The next transaction commit raises ``KafkaException(error)`` (and fails
        the transaction as Kafka would, for an abortable error)."""
        self.commit_failures.append(error)

    def hold_acknowledgements(self) -> None:
        """Keep produced records unacknowledged until :meth:`release_acknowledgements` or
        a producer's flush (which, as librdkafka's, returns once they are acknowledged)."""
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
            if transaction is not None:
                transaction.written.add((topic, partition))
            log.append(record)
            self.changed.notify_all()
        return record

    def records(self, topic: str, *, committed: bool = False) -> list[MemoryRecord]:
        """Every record of a topic (transaction markers left out), partition by partition,
        each in offset order; with ``committed``, only what a read_committed reader sees."""
        with self.changed:
            return [
                r
                for log in self._topics.get(topic, [])
                for r in log
                if not r.control and (not committed or r.visible)
            ]

    def end_transaction(self, transaction: MemoryTransaction, commit: bool) -> None:
        with self.changed:
            transaction.state = "committed" if commit else "aborted"
            self.transactions[transaction.state] += 1
            if commit:
                for group, offsets in transaction.group_offsets.items():
                    self._commit(group, offsets)
            for topic, partition in sorted(transaction.written):
                log = self._topics[topic][partition]
                marker = MemoryRecord(topic, partition, len(log), None, None, ())
                marker.control = True
                log.append(marker)
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
