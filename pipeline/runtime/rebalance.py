"""Rebalance handling: partitions arriving, being revoked, being lost.

The callbacks run on the consumer thread (inside ``consume`` and ``close``) and hand
their work to the event loop, waiting for it, so the runtime's state is only ever
touched from the loop. On assign, the offsets an earlier owner finished above its
committed watermark (in the commit metadata) are read so they are skipped, and the
service's assign hooks run before any record of the partitions is handled. On revoke,
unstarted work is handed back, started work drains within the deadline, and the
watermark is committed. Lost partitions are dropped without a commit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from confluent_kafka import KafkaException, TopicPartition

from pipeline.observability.metrics import RuntimeMetrics
from pipeline.runtime.committer import TP, Committer
from pipeline.runtime.offset_tracker import PartitionOffsets, decode_finished
from pipeline.runtime.ports import ConsumerPort
from pipeline.runtime.run_state import RunState

if TYPE_CHECKING:
    from pipeline.runtime.service import PartitionsHook

log = logging.getLogger("pipeline.runtime")

COMMITTED_TIMEOUT_SECONDS = 10.0


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
        self.rewinds = 0  # times every partition was handed back after an abort

    def attach(self, consumer: ConsumerPort, loop: asyncio.AbstractEventLoop) -> None:
        self.consumer = consumer
        self.loop = loop

    # ---------------------------------------------------------- on the consumer thread

    def on_assign(self, partitions: list[TopicPartition]) -> None:
        assert self.consumer is not None, "attach a consumer first"
        try:
            committed = self.consumer.committed(partitions, COMMITTED_TIMEOUT_SECONDS)
        except KafkaException as exc:
            log.warning("cannot read committed offsets, nothing will be skipped: %s", exc)
            committed = []
        asyncio.run_coroutine_threadsafe(self.assigned(partitions, committed), self.loop).result()

    def on_revoke(self, partitions: list[TopicPartition]) -> None:
        future = asyncio.run_coroutine_threadsafe(self.revoked(partitions, True), self.loop)
        parts = future.result()
        if parts and self.state.fatal is None:
            self.committer.commit_revoked(parts)

    def on_lost(self, partitions: list[TopicPartition]) -> None:
        transaction = self.committer.transaction
        if transaction is not None and transaction.doomed is None:
            # The open transaction holds work of partitions another member owns now.
            transaction.doomed = "partitions were lost"
        asyncio.run_coroutine_threadsafe(self.revoked(partitions, False), self.loop).result()

    def rewind(self, reopen: Callable[[], None]) -> None:
        """After an aborted transaction (exactly-once mode): hand back every partition and
        take it again from the committed offsets, as a revoke and an assign would, so
        state is restored from what was committed and nothing the abort dropped is lost.

        On the consumer thread, so no rebalance runs meanwhile; ``reopen()`` (on the loop)
        lets records into the new transaction once the old partitions are marked revoked,
        so work still running for them drops its outputs instead of producing them.
        """
        assert self.consumer is not None, "attach a consumer first"
        before = asyncio.run_coroutine_threadsafe(self._hand_back(reopen), self.loop).result()
        if not before or self.state.fatal is not None:
            return
        partitions = [TopicPartition(topic, partition) for topic, partition, _ in before]
        committed = self.consumer.committed(partitions, COMMITTED_TIMEOUT_SECONDS)
        asyncio.run_coroutine_threadsafe(self.assigned(partitions, committed), self.loop).result()
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
        self, partitions: list[TopicPartition], committed: list[TopicPartition]
    ) -> None:
        finished_before = {
            (tp.topic, tp.partition): decode_finished(tp.offset, tp.metadata)
            for tp in committed
            if tp.offset >= 0
        }
        for tp in partitions:
            key = (tp.topic, tp.partition)
            self.partitions[key] = PartitionOffsets(
                tp.topic, tp.partition, finished_before.get(key)
            )
        self.metrics.rebalances.labels(self.name, "assigned").inc(len(partitions))
        log.info("assigned %s", _names(partitions))
        await self._run_hooks(self.assigned_hooks, partitions)

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
            with contextlib.suppress(KeyError):
                self.metrics.consumer_lag.remove(self.name, part.topic, str(part.partition))
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
