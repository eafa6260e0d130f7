"""A key-value store per partition, backed by a compacted changelog topic.

As in Kafka Streams: partition N of the changelog holds the state of the keys whose
events arrive on partition N of the (co-partitioned) input topics. Every write goes to
the local map and, as a raw record among the handler's outputs, to the changelog, so it
is acknowledged before the input's offset commits. On assignment a partition is
restored by reading its changelog partition to the end; a tombstone (None) deletes.

A partition handed away keeps its map for ``retain_seconds``: if it comes back (eager
rebalances revoke everything and give most of it back), only the changelog written
since its last restore is read again, not the whole partition. Not in exactly-once
mode: there the writes go in the runtime's transaction with the outputs and offsets, a
map may hold writes of a transaction that was aborted, and a partition coming back is
read again in full (read_committed, so only committed writes).

Values are JSON objects (UTF-8, compact); keys are UTF-8 strings.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import weakref
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from pipeline.config import Settings
from pipeline.errors import StateNotReadyError, StateRestoreError
from pipeline.runtime.context import Context
from pipeline.runtime.publisher import Publisher
from pipeline.runtime.service import Service
from pipeline.state.changelog import Restored, partition_counts, read_changelog

log = logging.getLogger(__name__)

Value = dict[str, Any]
Reader = Callable[[list[str], dict[int, int | None]], dict[int, Restored]]


def encode_value(value: Mapping[str, Any]) -> bytes:
    return json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False).encode()


def decode_value(data: bytes) -> Value:
    value = json.loads(data)
    if not isinstance(value, dict):
        raise ValueError(f"state value is not a JSON object: {data[:80]!r}")
    return value


@dataclass(slots=True)
class PartitionState:
    """One partition's map and the changelog offset it was last restored to."""

    values: dict[str, Value] = field(default_factory=dict)
    restored_to: int | None = None
    released_at: float | None = None  # when it was handed away; None while owned


class StoreMetrics:
    """The stores' metrics, one set per registry (a service may keep several stores)."""

    _of: ClassVar[weakref.WeakKeyDictionary[CollectorRegistry, StoreMetrics]] = (
        weakref.WeakKeyDictionary()
    )

    @classmethod
    def of(cls, registry: CollectorRegistry) -> StoreMetrics:
        metrics = cls._of.get(registry)
        if metrics is None:
            metrics = cls._of[registry] = cls(registry)
        return metrics

    def __init__(self, registry: CollectorRegistry) -> None:
        self.restored = Counter(
            "pipeline_state_restored_records_total",
            "Changelog records read while restoring state.",
            ["service", "store"],
            registry=registry,
        )
        self.restore_duration = Histogram(
            "pipeline_state_restore_duration_seconds",
            "Time to restore the state of newly assigned partitions.",
            ["service", "store"],
            buckets=(0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300),
            registry=registry,
        )
        self.keys = Gauge(
            "pipeline_state_keys",
            "Keys held in the state of the partitions this instance owns.",
            ["service", "store"],
            registry=registry,
        )


class ChangelogStore:
    """Per-partition state for one service, restored from and written to ``changelog``.

    Attach it to a service (``store.attach(service)``) so it restores on assignment.
    In a handler, ``store.get(ctx, key)`` reads and ``store.put(ctx, key, value)`` writes;
    write last, once the handler can no longer fail, so a retried attempt starts from
    the state the failed one saw.
    """

    def __init__(
        self,
        settings: Settings,
        changelog: str,
        *,
        service: str,
        registry: CollectorRegistry | None = None,
        restore_timeout_seconds: float = 300.0,
        retain_seconds: float = 600.0,
        reader: Reader | None = None,
    ) -> None:
        """``reader(topics, starts)`` replaces reading the changelog from Kafka (tests)."""
        self.settings = settings
        self.changelog = changelog
        self.service = service
        self.restore_timeout_seconds = restore_timeout_seconds
        self.retain_seconds = retain_seconds
        self._read: Reader = reader or self._read_changelog
        self._partitions: dict[int, PartitionState] = {}
        self._owned: dict[int, set[str]] = {}  # partition -> topics assigned with it
        metrics = StoreMetrics.of(registry if registry is not None else CollectorRegistry())
        self._restored = metrics.restored.labels(service, changelog)
        self._restore_duration = metrics.restore_duration.labels(service, changelog)
        self._keys = metrics.keys.labels(service, changelog)

    # ------------------------------------------------------------------ handlers

    def get(self, ctx: Context, key: str) -> Value | None:
        """The value of ``key`` in the partition ``ctx``'s event came from (a copy)."""
        value = self._partition(ctx.partition).values.get(key)
        return None if value is None else json.loads(json.dumps(value))

    def put(self, ctx: Context, key: str, value: Mapping[str, Any]) -> None:
        """Set ``key`` locally and queue its changelog record with the handler's outputs."""
        data = encode_value(value)
        part = self._partition(ctx.partition)
        part.values[key] = decode_value(data)
        ctx.emit_record(self.changelog, key, data, kind=self.changelog)
        self._count_keys()

    def delete(self, ctx: Context, key: str) -> None:
        """Remove ``key`` locally and queue a tombstone."""
        self._partition(ctx.partition).values.pop(key, None)
        ctx.emit_record(self.changelog, key, None, kind=self.changelog)
        self._count_keys()

    async def put_now(
        self, partition: int, key: str, value: Mapping[str, Any], publisher: Publisher
    ) -> None:
        """Write ``key`` at once through ``publisher`` (not with the handler's outputs: in
        exactly-once mode the runtime's durable publisher writes outside the transaction),
        wait for the broker's acknowledgement, then set it locally."""
        data = encode_value(value)
        part = self._partition(partition)
        await publisher.publish_record(self.changelog, key, data)
        part.values[key] = decode_value(data)
        self._count_keys()

    async def delete_now(self, partition: int, key: str, publisher: Publisher) -> None:
        """Write ``key``'s tombstone at once through ``publisher``, then remove it locally."""
        part = self._partition(partition)
        await publisher.publish_record(self.changelog, key, None)
        part.values.pop(key, None)
        self._count_keys()

    # ------------------------------------------------------------------ inspection

    @property
    def partitions(self) -> list[int]:
        """Partitions this instance owns (restored and serving)."""
        return sorted(p for p in self._owned if p in self._partitions)

    def items(self, partition: int) -> Iterator[tuple[str, Value]]:
        """Keys and values of an owned partition."""
        yield from self._partition(partition).values.items()

    def lookup(self, partition: int, key: str) -> Value | None:
        return self._partition(partition).values.get(key)

    # ------------------------------------------------------------------ rebalances

    def attach(self, service: Service) -> None:
        """Restore on assignment and release on revocation of ``service``'s partitions."""
        service.on_assign(self.assigned)
        service.on_revoke(self.revoked)

    async def assigned(self, partitions: list[tuple[str, int]]) -> None:
        """Restore every partition number newly owned, before its records are handled."""
        fresh: set[int] = set()
        for topic, partition in partitions:
            if partition not in self._owned:
                fresh.add(partition)
            self._owned.setdefault(partition, set()).add(topic)
        if not fresh:
            return
        topics = sorted({t for t, _ in partitions})
        started = time.perf_counter()
        try:
            starts = {p: self._resume_offset(p) for p in sorted(fresh)}
            restored = await asyncio.to_thread(self._read, topics, starts)
        except Exception:
            for partition in fresh:
                self._owned.pop(partition, None)
            raise
        for partition, result in restored.items():
            self._apply(partition, result)
        self._restore_duration.observe(time.perf_counter() - started)
        self._count_keys()

    async def revoked(self, partitions: list[tuple[str, int]]) -> None:
        """Release partition numbers no subscribed topic is assigned with any more."""
        now = time.monotonic()
        for topic, partition in partitions:
            topics = self._owned.get(partition)
            if topics is None:
                continue
            topics.discard(topic)
            if not topics:
                del self._owned[partition]
                part = self._partitions.get(partition)
                if part is not None:
                    part.released_at = now
        for partition, part in list(self._partitions.items()):
            released = part.released_at
            if released is not None and now - released > self.retain_seconds:
                del self._partitions[partition]
        self._count_keys()

    def _read_changelog(
        self, topics: list[str], starts: dict[int, int | None]
    ) -> dict[int, Restored]:
        config = {**self.settings.consumer_config(), "group.id": self._group()}
        changelog = self.settings.topic(self.changelog)
        counts = partition_counts(config, [changelog, *topics])
        wanted = counts.pop(changelog)
        if wanted == 0:
            raise StateRestoreError(
                f"changelog topic {changelog} does not exist; create it (pipeline topics apply)"
            )
        mismatched = {t: n for t, n in counts.items() if n != wanted}
        if mismatched:
            raise StateRestoreError(
                f"{changelog} has {wanted} partitions but {mismatched} differ: state and "
                "its input topics must be co-partitioned (one partition count)"
            )
        return read_changelog(
            config, changelog, starts, decode_value, timeout=self.restore_timeout_seconds
        )

    def _resume_offset(self, partition: int) -> int | None:
        part = self._partitions.get(partition)
        if part is None or part.released_at is None:
            return None
        if self.settings.processing_guarantee == "exactly_once":
            # Its map may hold writes of an aborted transaction, or of work whose outputs
            # were dropped when the partition was handed back: read it all again.
            return None
        if time.monotonic() - part.released_at > self.retain_seconds:
            return None
        return part.restored_to

    def _apply(self, partition: int, result: Restored) -> None:
        part = self._partitions.get(partition)
        if part is None or result.full:
            part = self._partitions[partition] = PartitionState()
        for key, value in result.values.items():
            if value is None:
                part.values.pop(key, None)
            else:
                part.values[key] = value
        part.restored_to = result.end
        part.released_at = None
        self._restored.inc(result.records)
        log.info(
            "restored %s[%d]: %d records from offset %d (%s), %d keys",
            self.changelog,
            partition,
            result.records,
            result.start,
            "full" if result.full else "since last restore",
            len(part.values),
        )

    def _partition(self, partition: int) -> PartitionState:
        part = self._partitions.get(partition)
        if part is None or partition not in self._owned:
            raise StateNotReadyError(
                f"{self.changelog}[{partition}] is not restored on this instance"
            )
        return part

    def _group(self) -> str:
        return f"{self.settings.topic_prefix}{self.service}-restore"

    def _count_keys(self) -> None:
        self._keys.set(sum(len(self._partitions[p].values) for p in self.partitions))
