"""The commit sequence as one object, as Quix Streams' ``Checkpoint`` keeps it.

What is due: each partition's watermark (the lowest offset not finished, where an offset
is finished only once everything its handler emitted was acknowledged) with the finished
offsets above it in the commit's metadata. Committing it: asynchronously on each tick,
synchronously on revoke and at shutdown. The broker's answer: a failed commit is
forgotten, so the next tick commits again. Lag: measured on the same visit to the
consumer thread, from the consumer's cached end offsets.

In exactly-once mode (:mod:`pipeline.runtime.transaction`) the same positions are
committed inside the producer's transaction instead, on the same ticks, on revoke and at
shutdown: sealed (no record enters, every record in it acknowledged), then the offsets
sent with the consumer's group metadata and the transaction committed; an abortable
failure aborts it and the runner reads again from the committed offsets.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Sequence
from typing import Any, TypeVar

from confluent_kafka import KafkaError, KafkaException, TopicPartition

from pipeline.errors import AbortableTransactionError
from pipeline.observability.metrics import RuntimeMetrics
from pipeline.runtime.offset_tracker import PartitionOffsets
from pipeline.runtime.ports import ConsumerPort
from pipeline.runtime.run_state import RunState
from pipeline.runtime.transaction import Transaction

log = logging.getLogger("pipeline.runtime")

TP = tuple[str, int]
OnConsumerThread = Callable[..., Awaitable[Any]]
T = TypeVar("T")


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
        self.transaction: Transaction | None = None
        self.on_abort: Callable[[], None] = lambda: None

    def attach(self, consumer: ConsumerPort, loop: asyncio.AbstractEventLoop) -> None:
        self.consumer = consumer
        self.loop = loop

    def attach_transaction(
        self,
        transaction: Transaction,
        on_abort: Callable[[], None],
        flush_seconds: float,
    ) -> None:
        """Commit inside ``transaction`` (exactly-once mode); after an abort,
        ``on_abort()`` (on the consumer thread) reads again from the committed offsets."""
        self.transaction = transaction
        self.on_abort = on_abort
        self.flush_seconds = flush_seconds

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
        """Commit what changed (asynchronously, or in the transaction) and update the lag
        gauges."""
        marks = [
            (part.topic, part.partition, mark)
            for part in self.partitions.values()
            if (mark := part.watermark()) is not None
        ]
        if self.transaction is not None:
            lag = await on_consumer_thread(self._transact_and_measure, marks)
        else:
            pending = self.take(self.partitions.values())
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
        return self._measure(marks)

    def _transact_and_measure(
        self, marks: list[tuple[str, int, int]]
    ) -> list[tuple[str, int, int]]:
        self.commit_transaction()
        return self._measure(marks)

    def _measure(self, marks: list[tuple[str, int, int]]) -> list[tuple[str, int, int]]:
        assert self.consumer is not None, "attach a consumer first"
        lag = []
        for topic, partition, mark in marks:
            high = self.consumer.high_watermark(topic, partition)
            if high is not None:
                lag.append((topic, partition, max(0, high - mark)))
        return lag

    def commit_revoked(self, parts: Sequence[PartitionOffsets]) -> None:
        """Commit the final positions of revoked partitions, waiting for the answer (on
        the consumer thread, inside the revoke callback)."""
        if self.transaction is not None:
            # No asynchronous commit can be in flight: unchanged positions need nothing.
            self.commit_transaction(parts)
            return
        offsets = self._on_loop(self._take_now(parts))
        if offsets:
            self.commit_sync(offsets)

    async def _take_now(self, parts: Sequence[PartitionOffsets]) -> list[TopicPartition]:
        return [tp for _, tp in self.take(parts, force=True)]

    # ------------------------------------------------------ exactly-once, consumer thread

    def commit_transaction(
        self, extra: Sequence[PartitionOffsets] = (), *, force: bool = False
    ) -> None:
        """Seal the open transaction, commit it with the positions of the assigned
        partitions (and of ``extra``, partitions being revoked) and begin the next.

        An abortable failure aborts it and calls ``on_abort``; a fenced producer stops the
        service and leaves the gate closed, so nothing more is produced.
        """
        txn, consumer = self.transaction, self.consumer
        assert txn is not None and consumer is not None, "attach a transaction first"
        try:
            offsets = self._on_loop(self._seal(extra, force))
            if offsets is None:
                return  # nothing produced and no position moved: keep it open
            txn.commit(offsets, consumer.group_metadata())
        except AbortableTransactionError as exc:
            self.metrics.commits.labels(self.name, "failure").inc()
            log.warning("transaction aborted (%s); reading again from the committed offsets", exc)
            try:
                txn.abort()
            except Exception as stuck:  # fenced or stuck: nothing more may be committed
                self.state.fail(stuck)
                return
            self.on_abort()
            return
        except Exception as exc:  # fenced, or a bug: stop before committing anything more
            self.state.fail(exc)
            return
        txn.begin()
        self.metrics.commits.labels(self.name, "success").inc()
        self._confirmed(offsets, extra)
        self.loop.call_soon_threadsafe(self.reopen)

    def reopen(self) -> None:
        """Let records into the (new) transaction again; on the loop."""
        assert self.transaction is not None
        self.transaction.gate.dirty = False
        self.transaction.gate.open()

    async def _seal(
        self, extra: Sequence[PartitionOffsets], force: bool
    ) -> list[TopicPartition] | None:
        """On the loop: close the gate, wait until every record in the transaction is
        acknowledged (so its input is finished or failed), take the positions. None
        (the gate open again) when there is nothing to commit."""
        txn = self.transaction
        assert txn is not None
        await txn.gate.close()
        remaining = await txn.producer.flush(self.flush_seconds)
        if remaining and txn.doomed is None:
            txn.doomed = f"{remaining} records not acknowledged in {self.flush_seconds:g}s"
        parts = {id(p): p for p in self.partitions.values() if not p.revoked}
        parts.update((id(p), p) for p in extra)
        offsets = [tp for _, tp in self.take(parts.values(), force=force)]
        if not offsets and not txn.gate.dirty and txn.doomed is None:
            txn.gate.open()
            return None
        return offsets

    def _on_loop(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

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
            self._confirmed(offsets)

    def on_commit(self, err: KafkaError | None, partitions: list[TopicPartition]) -> None:
        """The broker's answer to an asynchronous commit."""
        if err is None or err.code() == KafkaError._NO_OFFSET:
            self.metrics.commits.labels(self.name, "success").inc()
            if err is None:
                self._confirmed(partitions)
        else:
            self.metrics.commits.labels(self.name, "failure").inc()
            log.warning("offset commit failed, will commit again: %s", err)
            # Runs on the consumer thread, where revokes also run: the parts are stable here.
            for tp in partitions:
                part = self.partitions.get((tp.topic, tp.partition))
                if part is not None:
                    part.committed = None

    def _confirmed(
        self, offsets: Sequence[TopicPartition], extra: Sequence[PartitionOffsets] = ()
    ) -> None:
        """The broker confirmed these commits: remember them on their partitions (read by
        :class:`~pipeline.runtime.running.Running`; ints, so no lock is needed)."""
        parts = {(p.topic, p.partition): p for p in extra}
        for tp in offsets:
            part = self.partitions.get((tp.topic, tp.partition)) or parts.get(
                (tp.topic, tp.partition)
            )
            if part is not None and tp.offset >= 0 and tp.error is None:
                part.confirmed(tp.offset)
