"""Reading ranges of many partitions with one assigned consumer, as records come.

Only reads: the consumer is assigned (never subscribed), never commits, and reads
committed records only, as the replay's readers do.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from pipeline.config import Settings
from pipeline.errors import EvaluationError
from pipeline.observability.kafka_logs import cli_connection, wait_for_metadata

Where = tuple[str, int]  # (physical topic, partition)

IDLE_SECONDS = 30.0  # no record for this long while some range is unfinished: give up


@contextmanager
def reader(settings: Settings, timeout: float = 10.0) -> Iterator[Consumer]:
    """A consumer for assigning, closed on exit; BrokerUnavailableError (one line, at
    once when every broker refuses) when the cluster does not answer within ``timeout``."""
    connection = cli_connection(settings.bootstrap_servers)
    consumer = Consumer(
        {
            **settings.consumer_config(),
            **connection.client_config(),
            "group.id": f"{settings.topic_prefix}evaluate-{uuid.uuid4()}",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "isolation.level": "read_committed",
            # The end of a range may be a transaction marker no record is read at: the
            # end of the partition tells that nothing more is there.
            "enable.partition.eof": True,
        }
    )
    try:
        wait_for_metadata(consumer, connection, timeout)
        yield consumer
    finally:
        consumer.close()


def scan(consumer: Consumer, ranges: Mapping[Where, tuple[int, int]]) -> Iterator[Message]:
    """Every record in ``[start, end)`` of each partition of ``ranges``, as they come
    (partitions interleaved, each in offset order). An empty range yields nothing."""
    wanted = {where: span for where, span in ranges.items() if span[1] > span[0]}
    if not wanted:
        return
    consumer.assign([TopicPartition(t, p, start) for (t, p), (start, _) in wanted.items()])
    open_ends = {where: end for where, (_, end) in wanted.items()}
    last_record = time.monotonic()
    try:
        while open_ends:
            # poll, not consume: consume waits for a full batch or the whole timeout.
            msg = consumer.poll(0.5)
            if msg is None:
                if time.monotonic() - last_record > IDLE_SECONDS:
                    missing = ", ".join(f"{t}[{p}]" for t, p in sorted(open_ends))
                    raise EvaluationError(f"no record came from {missing} for {IDLE_SECONDS:g}s")
                continue
            where = (msg.topic() or "", msg.partition() or 0)
            error = msg.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF and where in open_ends:
                    del open_ends[where]  # nothing more to read there for now
                continue
            last_record = time.monotonic()
            end = open_ends.get(where)
            if end is None:
                continue
            offset = msg.offset() or 0
            if offset + 1 >= end:
                del open_ends[where]
            if offset < end:
                yield msg
    finally:
        with suppress(KafkaException):
            consumer.unassign()


def watermarks(consumer: Consumer, where: Where, timeout: float = 10.0) -> tuple[int, int]:
    """The partition's low and high watermark."""
    low, high = consumer.get_watermark_offsets(TopicPartition(*where), timeout=timeout)
    return int(low), int(high)


def offset_at(consumer: Consumer, where: Where, millis: int, timeout: float = 10.0) -> int | None:
    """The first offset written at or after ``millis``, or None when there is none."""
    [found] = consumer.offsets_for_times([TopicPartition(*where, millis)], timeout=timeout)
    return int(found.offset) if found.offset >= 0 else None


def key_text(msg: Message) -> str | None:
    key = msg.key()
    if isinstance(key, bytes):
        return key.decode("utf-8", "replace")
    return key
