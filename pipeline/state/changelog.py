"""Reading a changelog topic's partitions from a start offset to their end.

Runs on a worker thread with its own consumer (assigned, never subscribed, never
committing), so the service's group is not disturbed while state is restored.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from pipeline.errors import StateRestoreError

METADATA_TIMEOUT_SECONDS = 10.0

log = logging.getLogger(__name__)

# What a tombstone's key and headers mean, for changelogs whose tombstones carry headers.
Tombstone = Callable[[str, list[tuple[str, Any]]], Any]


@dataclass(slots=True)
class Restored:
    """What one partition's changelog said from ``start`` on: latest value per key."""

    partition: int
    start: int
    end: int
    full: bool
    values: dict[str, Any | None] = field(default_factory=dict)
    records: int = 0


def read_changelog(
    config: Mapping[str, Any],
    topic: str,
    starts: Mapping[int, int | None],
    decode: Callable[[bytes], Any],
    *,
    timeout: float,
    ends: Mapping[int, int] | None = None,
    tombstone: Tombstone | None = None,
) -> dict[int, Restored]:
    """Read each partition of ``topic`` from ``starts[p]`` (None: the beginning) to its end,
    or only up to (not including) ``ends[p]`` where given.

    A start below the log's first offset (the log was truncated or recreated) falls back
    to a full read, flagged ``full``. ``decode`` runs on every non-tombstone value; a
    tombstone reads as None, or as what ``tombstone(key, headers)`` makes of it.
    """
    consumer = Consumer(
        {
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
            **config,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "enable.partition.eof": True,
        }
    )
    try:
        return _read(
            consumer, topic, starts, decode, tombstone, time.monotonic() + timeout, ends or {}
        )
    finally:
        consumer.close()


def _read(
    consumer: Consumer,
    topic: str,
    starts: Mapping[int, int | None],
    decode: Callable[[bytes], Any],
    tombstone: Tombstone | None,
    deadline: float,
    ends: Mapping[int, int],
) -> dict[int, Restored]:
    restored: dict[int, Restored] = {}
    pending: dict[int, Restored] = {}
    assign: list[TopicPartition] = []
    for partition, start in sorted(starts.items()):
        low, high = watermarks(consumer, topic, partition, deadline)
        high = min(high, ends.get(partition, high))
        full = start is None or start < low
        begin = low if full or start is None else start
        restored[partition] = state = Restored(partition, begin, high, full)
        if begin < high:
            pending[partition] = state
            assign.append(TopicPartition(topic, partition, begin))
    if not assign:
        return restored
    consumer.assign(assign)
    while pending:
        if time.monotonic() > deadline:
            behind = ", ".join(f"{topic}[{p}] up to {s.end}" for p, s in pending.items())
            raise StateRestoreError(f"restore of {behind} did not finish in time")
        for msg in consumer.consume(1000, 0.2):
            partition = msg.partition() or 0
            reading = pending.get(partition)
            err = msg.error()
            offset = msg.offset() or 0
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    # read_committed: the end it reaches is the last stable offset, below
                    # the high watermark while a transaction is open on the partition
                    # (this service's own, in exactly-once mode), whose writes are not
                    # state yet.
                    if reading is not None:
                        del pending[partition]
                elif err.fatal():
                    raise StateRestoreError(f"reading {topic}[{partition}] failed: {err}")
                else:
                    log.warning("while restoring %s[%d]: %s", topic, partition, err)
                continue
            if reading is None:
                continue
            key = msg.key()
            if key is not None:
                name = key.decode() if isinstance(key, bytes) else str(key)
                value = msg.value()
                try:
                    if value is not None:
                        reading.values[name] = decode(value)
                    elif tombstone is not None:
                        headers = msg.headers() or []
                        pairs = list(headers.items() if isinstance(headers, dict) else headers)
                        reading.values[name] = tombstone(name, pairs)
                    else:
                        reading.values[name] = None
                except ValueError as exc:
                    raise StateRestoreError(
                        f"{topic}[{partition}]@{offset} (key {name!r}) is not valid state: {exc}; "
                        "fix or tombstone the record"
                    ) from exc
                reading.records += 1
            if offset + 1 >= reading.end:
                del pending[partition]
    return restored


def watermarks(consumer: Consumer, topic: str, partition: int, deadline: float) -> tuple[int, int]:
    """Low and high watermark, retrying what a fresh or moving partition answers at first
    (no leader yet, leader moved) until ``deadline``."""
    while True:
        try:
            low, high = consumer.get_watermark_offsets(
                TopicPartition(topic, partition), timeout=METADATA_TIMEOUT_SECONDS
            )
            return int(low), int(high)
        except KafkaException as exc:
            error = exc.args[0] if exc.args else None
            retriable = isinstance(error, KafkaError) and (
                error.retriable()
                or error.code()
                in (
                    KafkaError.NOT_LEADER_FOR_PARTITION,
                    KafkaError.LEADER_NOT_AVAILABLE,
                    KafkaError.UNKNOWN_TOPIC_OR_PART,
                    KafkaError._TIMED_OUT,
                )
            )
            if not retriable or time.monotonic() > deadline:
                raise StateRestoreError(
                    f"cannot read the offsets of {topic}[{partition}]: {exc}"
                ) from exc
            log.info("offsets of %s[%d] not available yet (%s); retrying", topic, partition, exc)
            time.sleep(0.2)


def partition_counts(consumer_config: Mapping[str, Any], topics: list[str]) -> dict[str, int]:
    """How many partitions each of ``topics`` has (0 when the topic does not exist)."""
    consumer = Consumer({**consumer_config, "enable.auto.commit": False})
    counts: dict[str, int] = {}
    try:
        for topic in topics:
            meta = consumer.list_topics(topic, timeout=METADATA_TIMEOUT_SECONDS).topics.get(topic)
            ok = meta is not None and meta.error is None
            counts[topic] = len(meta.partitions) if ok and meta is not None else 0
    except KafkaException as exc:
        raise StateRestoreError(f"cannot read topic metadata: {exc}") from exc
    finally:
        consumer.close()
    return counts
