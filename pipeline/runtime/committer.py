"""The commit sequence as one object, as Quix Streams' ``Checkpoint`` keeps it.

What is due: each partition's watermark (the lowest offset not finished, where an offset
is finished only once everything its handler emitted was acknowledged) with the finished
offsets above it in the commit's metadata. Committing it: asynchronously on each tick,
synchronously on revoke and at shutdown. The broker's answer: a failed commit is
forgotten, so the next tick commits again. Lag: measured on the same visit to the
consumer thread, from the consumer's cached end offsets.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from confluent_kafka import KafkaError, KafkaException, TopicPartition

from pipeline.observability.metrics import RuntimeMetrics
from pipeline.runtime.offset_tracker import PartitionOffsets
from pipeline.runtime.ports import ConsumerPort
from pipeline.runtime.run_state import RunState

log = logging.getLogger("pipeline.runtime")

TP = tuple[str, int]
OnConsumerThread = Callable[..., Awaitable[Any]]


def position(part: PartitionOffsets, *, force: bool = False) -> TopicPartition | None:
    """What committing ``part`` would write now, or None when nothing changed (or, with
    ``force``, before any offset was fetched). Reads only: nothing is marked committed."""
    due = part.to_commit(force=force)
    if due is None:
        return None
    mark, metadata = due
    if metadata is None:
        # No metadata at all: an empty string would be stored as one NUL byte.
        return TopicPartition(part.topic, part.partition, mark)
    return TopicPartition(part.topic, part.partition, mark, metadata)


class Committer:
    """Commits the watermarks of the assigned partitions (``partitions``, shared with the
    runner and the rebalance handling, changed only on the event loop)."""

    def __init__(
        self,
        name: str,
        partitions: dict[TP, PartitionOffsets],
        metrics: RuntimeMetrics,
        state: RunState,
    ) -> None:
        self.name = name
        self.partitions = partitions
        self.metrics = metrics
        self.state = state
        self.consumer: ConsumerPort | None = None

    def attach(self, consumer: ConsumerPort) -> None:
        self.consumer = consumer

    # ------------------------------------------------------------------ on the loop

    def due(self) -> list[TopicPartition]:
        """Every position a forced commit would write now (for inspection: nothing is
        marked committed)."""
        return [tp for part in self.partitions.values() if (tp := position(part, force=True))]

    def take(
        self, parts: Iterable[PartitionOffsets], *, force: bool = False
    ) -> list[tuple[PartitionOffsets, TopicPartition]]:
        """The positions that changed since the last commit (with ``force``, every
        position, so a synchronous commit also covers an asynchronous one still in
        flight), marked as committed."""
        pending = []
        for part in parts:
            tp = position(part, force=force)
            if tp is not None:
                pending.append((part, tp))
                part.committed = (tp.offset, tp.metadata)
        return pending

    async def run_periodically(
        self,
        interval: float,
        on_consumer_thread: OnConsumerThread,
        before: Callable[[], None],
    ) -> None:
        """Every ``interval``: ``before()``, then commit what changed and measure lag."""
        while True:
            await asyncio.sleep(interval)
            before()
            try:
                await self.commit_tick(on_consumer_thread)
            except Exception as exc:  # a bug here would silently stop all commits
                self.state.fail(exc)
                return

    async def commit_tick(self, on_consumer_thread: OnConsumerThread) -> None:
        """Commit what changed asynchronously and update the lag gauges."""
        pending = self.take(self.partitions.values())
        marks = [
            (part.topic, part.partition, mark)
            for part in self.partitions.values()
            if (mark := part.watermark()) is not None
        ]
        lag = await on_consumer_thread(self._commit_and_measure, pending, marks)
        for topic, partition, value in lag:
            if (topic, partition) in self.partitions:
                self.metrics.consumer_lag.labels(self.name, topic, str(partition)).set(value)

    # ---------------------------------------------------------- on the consumer thread

    def _commit_and_measure(
        self,
        pending: list[tuple[PartitionOffsets, TopicPartition]],
        marks: list[tuple[str, int, int]],
    ) -> list[tuple[str, int, int]]:
        """Commit asynchronously, then the lag of each partition from cached end offsets.

        Runs after any rebalance callback that came first on the consumer thread: a
        partition revoked meanwhile was committed by its revoke, and committing its older
        position now would move the next owner back.
        """
        consumer = self.consumer
        assert consumer is not None, "attach a consumer first"
        offsets = [tp for part, tp in pending if not part.revoked]
        if offsets:
            try:
                consumer.commit(offsets, asynchronous=True)
            except KafkaException as exc:
                self.metrics.commits.labels(self.name, "failure").inc()
                log.warning("commit failed: %s", exc)
        lag = []
        for topic, partition, mark in marks:
            high = consumer.high_watermark(topic, partition)
            if high is not None:
                lag.append((topic, partition, max(0, high - mark)))
        return lag

    def commit_sync(self, offsets: list[TopicPartition]) -> None:
        """Commit and wait for the broker's answer (on revoke and at shutdown)."""
        assert self.consumer is not None, "attach a consumer first"
        try:
            self.consumer.commit(offsets, asynchronous=False)
        except KafkaException as exc:
            self.metrics.commits.labels(self.name, "failure").inc()
            log.warning("commit of %s failed: %s", offsets, exc)
        else:
            self.metrics.commits.labels(self.name, "success").inc()

    def on_commit(self, err: KafkaError | None, partitions: list[TopicPartition]) -> None:
        """The broker's answer to an asynchronous commit."""
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
