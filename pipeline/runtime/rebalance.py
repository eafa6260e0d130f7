"""Rebalance handling: partitions arriving, being revoked, being lost.

The callbacks run on the consumer thread (inside ``consume`` and ``close``) and hand
their work to the event loop, waiting for it, so the runtime's state is only ever
touched from the loop. On assign, the offsets an earlier owner finished above its
committed watermark (in the commit metadata) are read so they are skipped, and the
service's assign hooks run before any record of the partitions is handled. On revoke,
unstarted work is handed back, started work drains within the deadline, and the
watermark is committed. Lost partitions are dropped without a commit.

When the committed offsets cannot be read at assignment (the group coordinator is
down), the partitions are *held*: their records are dropped and the partitions paused,
and the read is tried again with backoff (:meth:`Rebalancer.release_held`) until it
succeeds; then each is sought back to its committed offset and resumed. No record is
handled from a position the committed state does not vouch for, so nothing an earlier
owner finished is handled again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

from confluent_kafka import KafkaException, TopicPartition

from pipeline.observability.metrics import RuntimeMetrics
from pipeline.runtime.committer import TP, Committer
from pipeline.runtime.kafka_thread import KafkaThread
from pipeline.runtime.offset_tracker import PartitionOffsets, decode_finished
from pipeline.runtime.ports import ConsumerPort
from pipeline.runtime.run_state import RunState

if TYPE_CHECKING:
    from pipeline.runtime.service import PartitionsHook

log = logging.getLogger("pipeline.runtime")
T = TypeVar("T")

COMMITTED_TIMEOUT_SECONDS = 10.0
# Reading the committed offsets of held partitions again: a short wait per try (the
# consumer thread fetches nothing meanwhile), backing off between tries.
RETRY_READ_TIMEOUT_SECONDS = 5.0
RETRY_BACKOFF_SECONDS = (0.5, 10.0)


class Rebalancer:
    """Keeps ``partitions`` (shared with the runner and the committer) in step with the
    group's assignment."""

    def __init__(
        self,
        *,
        name: str,
        partitions: dict[TP, PartitionOffsets],
        paused: set[TP],
        committer: Committer,
        metrics: RuntimeMetrics,
        state: RunState,
        drain_timeout: float,
        assigned_hooks: list[PartitionsHook],
        revoked_hooks: list[PartitionsHook],
    ) -> None:
        self.name = name
        self.partitions = partitions
        self.paused = paused
        self.committer = committer
        self.metrics = metrics
        self.state = state
        self.drain_timeout = drain_timeout
        self.assigned_hooks = assigned_hooks
        self.revoked_hooks = revoked_hooks
        self.consumer: ConsumerPort | None = None
        self.thread: KafkaThread | None = None
        self.rewinds = 0  # times every partition was handed back after an abort
        # The assignment as the consumer thread knows it (changed only on that thread).
        self.assignment: dict[TP, TopicPartition] = {}
        self.holding = False  # some partition is held (on the loop)
        self.next_read = 0.0  # when to try reading the held partitions' offsets again
        self.backoff = RETRY_BACKOFF_SECONDS[0]

    def attach(
        self,
        consumer: ConsumerPort,
        loop: asyncio.AbstractEventLoop,
        thread: KafkaThread | None = None,
    ) -> None:
        self.consumer = consumer
        self.loop = loop
        self.thread = thread

    # ---------------------------------------------------------- on the consumer thread

    def on_assign(self, partitions: list[TopicPartition]) -> None:
        with self._in_callback():
            consumer = self.consumer
            assert consumer is not None, "attach a consumer first"
            for tp in partitions:
                self.assignment[(tp.topic, tp.partition)] = TopicPartition(tp.topic, tp.partition)
            committed = self._read_committed(partitions, COMMITTED_TIMEOUT_SECONDS)
            self._on_loop(self.assigned(partitions, committed))

    def on_revoke(self, partitions: list[TopicPartition]) -> None:
        with self._in_callback():
            self._forget(partitions)
            parts = self._on_loop(self.revoked(partitions, True))
            if parts and self.state.fatal is None:
                self.committer.commit_revoked(parts)

    def on_lost(self, partitions: list[TopicPartition]) -> None:
        with self._in_callback():
            self._forget(partitions)
            transaction = self.committer.transaction
            if transaction is not None and transaction.doomed is None:
                # The open transaction holds work of partitions another member owns now.
                transaction.doomed = "partitions were lost"
            self._on_loop(self.revoked(partitions, False))

    def positions(self) -> list[TopicPartition]:
        """The consumer's position in every assigned partition (on the consumer thread)."""
        if not self.assignment:
            return []
        assert self.consumer is not None, "attach a consumer first"
        try:
            return self.consumer.position(list(self.assignment.values()))
        except KafkaException:
            return []

    def release_held(self) -> None:
        """Read the committed offsets of the held partitions again; once they are read,
        seek each back to its committed offset and resume it (on the consumer thread)."""
        assert self.consumer is not None, "attach a consumer first"
        held = self._on_loop(self._held())
        if not held:
            return
        committed = self._read_committed(
            [TopicPartition(t, p) for t, p, _ in held], RETRY_READ_TIMEOUT_SECONDS
        )
        if committed is None:
            self.backoff = min(self.backoff * 2, RETRY_BACKOFF_SECONDS[1])
            self.next_read = time.monotonic() + self.backoff
            return
        self.backoff = RETRY_BACKOFF_SECONDS[0]
        starts = {(tp.topic, tp.partition): tp.offset for tp in committed if tp.offset >= 0}
        seeks = []
        for topic, partition, dropped_from in held:
            offset = starts.get((topic, partition), dropped_from)
            if offset is not None:
                seeks.append(TopicPartition(topic, partition, offset))
        self._on_loop(self._release(committed))
        self.consumer.seek(seeks)
        self.consumer.resume([TopicPartition(t, p) for t, p, _ in held])
        log.info("committed offsets read: handling %s from %s", _names(seeks), _offsets(seeks))

    def _read_committed(
        self, partitions: list[TopicPartition], timeout: float
    ) -> list[TopicPartition] | None:
        """The committed offsets, or None when they cannot be read now."""
        assert self.consumer is not None, "attach a consumer first"
        try:
            committed = self.consumer.committed(partitions, timeout)
        except KafkaException as exc:
            log.warning(
                "cannot read the committed offsets of %s (%s): holding them back until "
                "they can be read",
                _names(partitions),
                exc,
            )
            return None
        failed = [tp for tp in committed if tp.error is not None]
        if failed:
            log.warning(
                "cannot read the committed offsets of %s (%s): holding them back until "
                "they can be read",
                _names(failed),
                failed[0].error,
            )
            return None
        return committed

    def _forget(self, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            self.assignment.pop((tp.topic, tp.partition), None)

    def _in_callback(self) -> contextlib.AbstractContextManager[None]:
        """The consumer thread runs the runtime's code now, not the client's."""
        return self.thread.in_callback() if self.thread else contextlib.nullcontext()

    def _on_loop(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def rewind(self, reopen: Callable[[], None]) -> None:
        """After an aborted transaction (exactly-once mode): hand back every partition and
        take it again from the committed offsets, as a revoke and an assign would, so
        state is restored from what was committed and nothing the abort dropped is lost.

        On the consumer thread, so no rebalance runs meanwhile; ``reopen()`` (on the loop)
        lets records into the new transaction once the old partitions are marked revoked,
        so work still running for them drops its outputs instead of producing them.
        """
        assert self.consumer is not None, "attach a consumer first"
        before = self._on_loop(self._hand_back(reopen))
        if not before or self.state.fatal is not None:
            return
        partitions = [TopicPartition(topic, partition) for topic, partition, _ in before]
        committed = self._read_committed(partitions, COMMITTED_TIMEOUT_SECONDS)
        firsts = {(t, p): first for t, p, first in before if first is not None}
        self._on_loop(self.assigned(partitions, committed, firsts))
        if committed is None:
            return  # held: sought back to the committed offsets once they can be read
        resume = {(tp.topic, tp.partition): tp.offset for tp in committed if tp.offset >= 0}
        seeks = []
        for topic, partition, first in before:
            offset = resume.get((topic, partition), first)
            if offset is not None:
                seeks.append(TopicPartition(topic, partition, offset))
        self.consumer.seek(seeks)
        self.consumer.resume(partitions)  # paused ones were forgotten with their old state
        log.info("read again from the committed offsets: %s", _names(seeks))

    # ------------------------------------------------------------------ on the loop

    async def assigned(
        self,
        partitions: list[TopicPartition],
        committed: list[TopicPartition] | None,
        fetched_from: dict[TP, int] | None = None,
    ) -> None:
        """New partitions; with ``committed`` None (unreadable) they are held (sought back,
        once released, to the committed offset or else to ``fetched_from``, the first
        offset fetched before)."""
        starts = {(tp.topic, tp.partition): tp for tp in committed or () if tp.offset >= 0}
        for tp in partitions:
            key = (tp.topic, tp.partition)
            start = starts.get(key)
            part = PartitionOffsets(
                tp.topic,
                tp.partition,
                None if start is None else decode_finished(start.offset, start.metadata),
            )
            part.start = part.durable = None if start is None else start.offset
            part.held = committed is None
            if part.held and fetched_from:
                part.held_from = fetched_from.get(key)
            self.partitions[key] = part
        if committed is None:
            self.holding = True
            self.backoff = RETRY_BACKOFF_SECONDS[0]
            self.next_read = time.monotonic() + self.backoff
            self.metrics.held_partitions.inc(len(partitions))
        self.metrics.rebalances.labels(self.name, "assigned").inc(len(partitions))
        log.info("assigned %s", _names(partitions))
        await self._run_hooks(self.assigned_hooks, partitions)

    async def _held(self) -> list[tuple[str, int, int | None]]:
        """The held partitions, each with the first offset dropped while held."""
        return [(p.topic, p.partition, p.held_from) for p in self.partitions.values() if p.held]

    async def _release(self, committed: list[TopicPartition]) -> None:
        """The committed offsets of held partitions were read: handle them from there."""
        for tp in committed:
            part = self.partitions.get((tp.topic, tp.partition))
            if part is None or not part.held:
                continue
            part.held = False
            part.held_from = None
            if tp.offset >= 0:
                part.skip = decode_finished(tp.offset, tp.metadata)
                part.start = part.durable = tp.offset
            self.paused.discard((tp.topic, tp.partition))  # resumed on the consumer thread
            self.metrics.held_partitions.dec()
        self.holding = any(p.held for p in self.partitions.values())

    async def _hand_back(self, reopen: Callable[[], None]) -> list[tuple[str, int, int | None]]:
        parts = list(self.partitions.values())
        for part in parts:
            part.revoked = True
        self.rewinds += 1
        reopen()
        partitions = [TopicPartition(p.topic, p.partition) for p in parts]
        await self.revoked(partitions, True)
        return [(p.topic, p.partition, p.first) for p in parts]

    async def revoked(
        self, partitions: list[TopicPartition], drain: bool
    ) -> list[PartitionOffsets]:
        """Drop unstarted work of the partitions, drain started work; returns them (to
        commit their final positions)."""
        parts = [
            p
            for tp in partitions
            if (p := self.partitions.get((tp.topic, tp.partition))) is not None
        ]
        for part in parts:
            part.revoked = True
        deadline = time.monotonic() + self.drain_timeout
        state = self.state
        busy = drain and state.fatal is None and any(p.in_progress > 0 for p in parts)
        while busy and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
            busy = state.fatal is None and any(p.in_progress > 0 for p in parts)
        for part in parts:
            tp = (part.topic, part.partition)
            del self.partitions[tp]
            self.paused.discard(tp)
            if part.held:
                self.metrics.held_partitions.dec()
            with contextlib.suppress(KeyError):
                self.metrics.consumer_lag.remove(self.name, part.topic, str(part.partition))
        self.holding = any(p.held for p in self.partitions.values())
        await self._run_hooks(self.revoked_hooks, partitions)
        kind = "revoked" if drain else "lost"
        self.metrics.rebalances.labels(self.name, kind).inc(len(partitions))
        log.info("%s %s", kind, _names(partitions))
        return parts if drain else []

    async def _run_hooks(
        self, hooks: list[PartitionsHook], partitions: list[TopicPartition]
    ) -> None:
        names = [(tp.topic, tp.partition) for tp in partitions]
        for hook in hooks:
            try:
                await hook(names)
            except Exception as exc:  # state that cannot be restored must not be guessed
                self.state.fail(exc)


def _names(partitions: list[TopicPartition]) -> str:
    return ", ".join(f"{tp.topic}[{tp.partition}]" for tp in partitions) or "nothing"


def _offsets(partitions: list[TopicPartition]) -> str:
    return ", ".join(str(tp.offset) for tp in partitions) or "-"
