"""The ``web_outgoing`` topic: where web replies for browsers' streams are written.

Delivery writes one record per streamed response (key: the conversation id; event id:
derived from the response id, :func:`stream_event_id`); every gateway replica reads the
whole topic and pushes each record to the streams it holds. A record's position,
``<partition>-<offset>`` (:class:`Position`), is the stream's event id, so a client that
reconnects says where it stopped, and any replica reads on from there
(:func:`read_partition`). Delivery reads the same way to tell whether an interrupted
attempt was written (:func:`find_event`).

Answers being written reach the streams from ``response_delta`` (the agent's previews,
:data:`DELTA_EVENT`) too, so a stream's event id (:class:`StreamMark`) says where it is in
both: ``<partition>-<offset>.<delta offset>``; a mark without the delta offset (as
streams gave before deltas) resumes the messages only.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Consumer, KafkaError, Message, TopicPartition

from pipeline.errors import StateRestoreError
from pipeline.partitioner import partition_for
from pipeline.runtime.headers import EVENT_ID, header
from pipeline.state.changelog import METADATA_TIMEOUT_SECONDS, watermarks

STREAM_EVENT = "web_outgoing"
DELTA_EVENT = "response_delta"
_POSITION = re.compile(r"([0-9]{1,6})-([0-9]{1,19})")
_MARK = re.compile(r"([0-9]{1,6})-(-1|[0-9]{1,19})(?:\.(-1|[0-9]{1,19}))?")


def stream_event_id(response_id: uuid.UUID) -> uuid.UUID:
    """The event id of the stream record of a response: the same for every attempt."""
    return uuid.uuid5(response_id, STREAM_EVENT)


@dataclass(frozen=True, slots=True, order=True)
class Position:
    """Where a record is in the topic; ``<partition>-<offset>`` as text."""

    partition: int
    offset: int

    def __str__(self) -> str:
        return f"{self.partition}-{self.offset}"

    @classmethod
    def parse(cls, text: str) -> Position | None:
        """The position ``text`` names, or None when it names none."""
        match = _POSITION.fullmatch(text.strip())
        if match is None:
            return None
        return cls(int(match.group(1)), int(match.group(2)))


@dataclass(frozen=True, slots=True)
class StreamMark:
    """Where a stream stands: the last ``web_outgoing`` offset it sent (or stood after)
    in the conversation's partition, and the last ``response_delta`` offset (None: not
    known, so no delta is read again). Offsets of -1 stand before the first record."""

    partition: int
    offset: int
    delta: int | None = None

    def __str__(self) -> str:
        text = f"{self.partition}-{self.offset}"
        return text if self.delta is None else f"{text}.{self.delta}"

    @property
    def position(self) -> Position:
        """The ``web_outgoing`` position of the mark."""
        return Position(self.partition, self.offset)

    @classmethod
    def parse(cls, text: str) -> StreamMark | None:
        """The mark ``text`` names, or None when it names none."""
        match = _MARK.fullmatch(text.strip())
        if match is None:
            return None
        delta = None if match.group(3) is None else int(match.group(3))
        return cls(int(match.group(1)), int(match.group(2)), delta)


@dataclass(slots=True)
class Scan:
    """What one read of a partition found: the kept records, and how far it got."""

    records: list[Message] = field(default_factory=list)
    next_offset: int = 0
    """The offset after the last one read: where reading on continues."""
    skipped_from: int | None = None
    """Records before ``next_offset`` that were never read (expired, or over the limit)."""
    complete: bool = True
    """False when the limit stopped the read before the end it aimed at."""


def reader(config: Mapping[str, Any]) -> Consumer:
    """A consumer that is assigned partitions and never commits (no group is joined)."""
    return Consumer(
        {
            "group.id": "pipeline-web-stream-reader",
            "isolation.level": "read_committed",
            **config,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "enable.partition.eof": True,
        }
    )


def consume_available(consumer: Consumer, limit: int, timeout: float) -> list[Message]:
    """The records ``consumer`` holds, at most ``limit``, as soon as it has one: waits at
    most ``timeout`` for the first, takes the rest without waiting.

    librdkafka's batch consume returns only when the batch is full or its timeout has
    passed, so ``consume(limit, timeout)`` would hold a lone record (the first delta of an
    answer, a reply) for the whole timeout; under load the batch still fills with what
    arrived meanwhile."""
    first: list[Message] = consumer.consume(1, timeout)
    if not first:
        return first
    return [*first, *consumer.consume(limit - 1, 0)]


def partition_count(consumer: Consumer, topic: str) -> int:
    """How many partitions ``topic`` has; StateRestoreError when it does not exist."""
    meta = consumer.list_topics(topic, timeout=METADATA_TIMEOUT_SECONDS).topics.get(topic)
    if meta is None or meta.error is not None or not meta.partitions:
        raise StateRestoreError(f"topic {topic} does not exist; apply the topics first")
    return len(meta.partitions)


def partition_of(consumer: Consumer, topic: str, conversation_id: str) -> int:
    """The partition of ``conversation_id``'s records (murmur2, as the producer)."""
    return partition_for(conversation_id, partition_count(consumer, topic))


def read_partition(
    consumer: Consumer,
    topic: str,
    partition: int,
    start: int,
    *,
    keep: Callable[[Message], bool],
    limit: int,
    timeout: float,
) -> Scan:
    """Read ``topic[partition]`` from ``start`` to its current end, keeping the records
    ``keep`` accepts; at most ``limit`` records are read (the newest, when there are more).
    """
    deadline = time.monotonic() + timeout
    low, high = watermarks(consumer, topic, partition, deadline)
    scan = Scan(next_offset=max(start, low))
    if start < low:
        scan.skipped_from = start
    if high - scan.next_offset > limit:
        scan.skipped_from = start if scan.skipped_from is None else scan.skipped_from
        scan.next_offset = high - limit
        scan.complete = False
    if scan.next_offset >= high:
        scan.next_offset = max(scan.next_offset, high)
        return scan
    consumer.assign([TopicPartition(topic, partition, scan.next_offset)])
    try:
        while scan.next_offset < high:
            if time.monotonic() > deadline:
                raise StateRestoreError(f"reading {topic}[{partition}] did not finish in time")
            for msg in consume_available(consumer, 500, 0.2):
                err = msg.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        # read_committed: the end may sit below the high watermark.
                        return scan
                    if err.fatal():
                        raise StateRestoreError(f"reading {topic}[{partition}] failed: {err}")
                    continue
                offset = msg.offset() or 0
                scan.next_offset = offset + 1
                if keep(msg):
                    scan.records.append(msg)
                if scan.next_offset >= high:
                    break
    finally:
        consumer.unassign()
    return scan


def find_event(
    config: Mapping[str, Any],
    topic: str,
    conversation_id: str,
    event_id: uuid.UUID,
    since_ms: int,
    timeout: float,
) -> Position | None:
    """Where the record of ``event_id`` is, if it was written at ``since_ms`` or later."""
    wanted = str(event_id).encode()
    consumer = reader(config)
    try:
        partition = partition_of(consumer, topic, conversation_id)
        (found,) = consumer.offsets_for_times(
            [TopicPartition(topic, partition, since_ms)], timeout=timeout
        )
        if found.offset < 0:  # nothing written since then
            return None
        scan = read_partition(
            consumer,
            topic,
            partition,
            found.offset,
            keep=lambda msg: header(msg, EVENT_ID) == wanted,
            limit=1_000_000,
            timeout=timeout,
        )
    finally:
        consumer.close()
    if not scan.records:
        return None
    return Position(partition, scan.records[0].offset() or 0)
