"""The two ports through which the runtime reaches Kafka: the consumer and producer calls
it makes, and nothing else.

Production wires confluent-kafka (:mod:`pipeline.runtime.kafka_transport`);
:mod:`pipeline.testing` wires an in-memory broker, so a service's handlers run through
the same lanes, retries, dead letters and commits without a broker.

Offsets travel as confluent-kafka's ``TopicPartition`` and delivery errors as its
``KafkaError``: both are plain values that either side can build. A fetched record is
anything shaped like confluent-kafka's ``Message`` (:class:`Record`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from confluent_kafka import KafkaError, TopicPartition

RecordHeaders = dict[str, str | bytes | None] | list[tuple[str, str | bytes | None]]
Headers = Sequence[tuple[str, str | bytes | None]]

# (error or None when the broker acknowledged, the produced record)
AckCallback = Callable[[KafkaError | None, Any], None]
# Rebalance callbacks, run on the consumer's thread inside ``consume`` and ``close``.
PartitionsCallback = Callable[[list[TopicPartition]], None]
# The broker's answer to an asynchronous commit, on the consumer's thread.
CommitCallback = Callable[[KafkaError | None, list[TopicPartition]], None]


class Record(Protocol):
    """A fetched record: what the runtime reads of confluent-kafka's ``Message``."""

    def topic(self) -> str | None: ...
    def partition(self) -> int | None: ...
    def offset(self) -> int | None: ...
    def key(self) -> str | bytes | None: ...
    def value(self) -> bytes | None: ...
    def headers(self) -> RecordHeaders | None: ...
    def error(self) -> KafkaError | None: ...
    def timestamp(self) -> tuple[int, int]: ...


class ConsumerPort(Protocol):
    """The consumer calls the runtime makes, all from one thread (the consumer thread)."""

    def subscribe(
        self,
        topics: list[str],
        *,
        on_assign: PartitionsCallback,
        on_revoke: PartitionsCallback,
        on_lost: PartitionsCallback,
    ) -> None: ...

    def consume(self, max_records: int, timeout: float) -> Sequence[Record]:
        """Up to ``max_records`` records, waiting at most ``timeout`` seconds for any."""
        ...

    def committed(self, partitions: list[TopicPartition], timeout: float) -> list[TopicPartition]:
        """The group's committed offsets (with their metadata) of these partitions."""
        ...

    def position(self, partitions: list[TopicPartition]) -> list[TopicPartition]:
        """The next offset the consumer hands over for each partition (past transaction
        markers and aborted records it stepped over); negative when not known."""
        ...

    def commit(self, offsets: list[TopicPartition], *, asynchronous: bool) -> None:
        """Commit offsets; an asynchronous commit reports through the commit callback."""
        ...

    def pause(self, partitions: list[TopicPartition]) -> None: ...
    def resume(self, partitions: list[TopicPartition]) -> None: ...

    def high_watermark(self, topic: str, partition: int) -> int | None:
        """The partition's end offset as last seen (no request), or None if unknown."""
        ...

    def close(self) -> None:
        """Leave the group (revoking what is assigned) and release the client."""
        ...

    def group_metadata(self) -> Any:
        """The group membership (group, generation, member) as an opaque value for
        :meth:`TransactionalProducerPort.send_offsets_to_transaction`, which the group
        coordinator checks, so a member of an older generation cannot commit (KIP-447)."""
        ...

    def seek(self, partitions: list[TopicPartition]) -> None:
        """Fetch the partitions from these offsets next (records fetched before are dropped)."""
        ...


class ProducerPort(Protocol):
    """The producer calls the runtime makes, all from the event loop; every
    acknowledgement callback runs on the loop."""

    def produce_nowait(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | str | None,
        headers: Headers,
        on_ack: AckCallback,
    ) -> bool:
        """Queue one record; False (nothing queued) while the local queue is full."""
        ...

    async def produce(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | str | None,
        headers: Headers,
        on_ack: AckCallback,
    ) -> None:
        """Queue one record, waiting while the local queue is full."""
        ...

    async def send(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | str | None = None,
        headers: Headers = (),
    ) -> asyncio.Future[Record]:
        """Queue one record; the future resolves to it once the broker acknowledged it
        (with its partition and offset)."""
        ...

    async def flush(self, seconds: float) -> int:
        """Wait for queued records, at most ``seconds``; returns how many remain."""
        ...

    async def aclose(self, flush_seconds: float) -> int:
        """Flush and release; returns how many records were not acknowledged."""
        ...


class TransactionalProducerPort(ProducerPort, Protocol):
    """A producer with a ``transactional.id`` (exactly-once mode).

    The transaction calls block until the coordinator answered: the runtime makes them
    on the consumer thread, never on the event loop. A failure raises ``KafkaException``
    whose ``KafkaError`` says what to do: ``txn_requires_abort()`` (abort, then start
    again from the committed offsets), ``retriable()`` (call again) or ``fatal()`` (the
    producer was fenced or broken: stop).
    """

    def init_transactions(self, timeout: float) -> None:
        """Register the transactional id, fencing (and aborting the open transaction of)
        any earlier producer with the same id."""
        ...

    def begin_transaction(self) -> None: ...

    def send_offsets_to_transaction(
        self, offsets: list[TopicPartition], group_metadata: Any, timeout: float
    ) -> None:
        """Add the consumer's offsets (with their metadata) to the open transaction."""
        ...

    def commit_transaction(self, timeout: float) -> None: ...

    def abort_transaction(self, timeout: float) -> None:
        """Abort the open transaction; records not yet delivered fail (purged)."""
        ...


class Transport(Protocol):
    """Makes the runtime's consumer and producer."""

    def consumer(self, config: dict[str, Any], on_commit: CommitCallback) -> ConsumerPort: ...

    def producer(self, config: dict[str, Any], loop: asyncio.AbstractEventLoop) -> ProducerPort: ...

    def transactional_producer(
        self, config: dict[str, Any], loop: asyncio.AbstractEventLoop
    ) -> TransactionalProducerPort:
        """A producer for exactly-once mode; ``config`` carries its ``transactional.id``."""
        ...
