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
        offsets = future.result()
        if offsets and self.state.fatal is None:
            self.committer.commit_sync(offsets)

    def on_lost(self, partitions: list[TopicPartition]) -> None:
        asyncio.run_coroutine_threadsafe(self.revoked(partitions, False), self.loop).result()

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

    async def revoked(self, partitions: list[TopicPartition], drain: bool) -> list[TopicPartition]:
        """Drop unstarted work of the partitions, drain started work, return offsets."""
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
        offsets = [tp for _, tp in self.committer.take(parts, force=True)] if drain else []
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
        return offsets

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
