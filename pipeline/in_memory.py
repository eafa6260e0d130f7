"""A Service run in memory through the real runtime, while an ``async with`` block lasts.

:class:`InMemoryService` wires the runtime's ports to a
:class:`~pipeline.runtime.memory_broker.MemoryBroker` and runs the service with its
real lanes, retries, dead letters, backpressure and commits; only Kafka is replaced. A
state store attached to the service (:class:`~pipeline.state.ChangelogStore`) restores
from the memory broker's changelog topic, not from Kafka. ``pipeline replay`` runs
recorded events through it; :class:`pipeline.testing.TestService` is the same for tests.

Topics get their partition counts from the topic definitions. With
``processing_guarantee="exactly_once"`` the outputs a caller sees are the committed ones.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any, Self

from confluent_kafka import TopicPartition
from prometheus_client import CollectorRegistry

from pipeline.config import Settings
from pipeline.events.model import Event, Metadata
from pipeline.observability.tracing import child_traceparent
from pipeline.runtime.headers import event_headers
from pipeline.runtime.memory_broker import MemoryBroker, MemoryRecord
from pipeline.runtime.memory_transport import MemoryTransport
from pipeline.runtime.runner import Runner
from pipeline.runtime.service import Service
from pipeline.state import ChangelogStore, decode_value
from pipeline.state.changelog import Restored
from pipeline.topology import load_settings_topology

__all__ = ["IN_MEMORY_SETTINGS", "InMemoryService", "state_stores"]

# No health server, and retries that back off for milliseconds.
IN_MEMORY_SETTINGS: dict[str, Any] = {
    "metrics_port": 0,
    "retry_backoff_initial_seconds": 0.001,
    "retry_backoff_max_seconds": 0.01,
}


def state_stores(service: Service) -> list[ChangelogStore]:
    """The state stores attached to ``service`` (``store.attach(service)``)."""
    found = (getattr(hook, "__self__", None) for hook in service.assigned_hooks)
    return [store for store in found if isinstance(store, ChangelogStore)]


class InMemoryService:
    """Run ``service`` in memory while the ``async with`` block lasts.

    ``overrides`` replace settings for the run (``max_retries=1``,
    ``max_buffered_per_partition=4``, ...); by default the health endpoint is off and
    retries back off for milliseconds. Leaving the block shuts the service down as
    SIGTERM would (drain, commit, close) and raises what stopped it, if anything did.
    Pass the ``broker`` of an earlier run to start where it committed, as a restarted
    or rebalanced service would. The runtime's metrics of each run go to a fresh
    ``registry`` (the service's own metrics stay in ``service.registry``), so one service
    can be run by many tests.
    """

    def __init__(
        self, service: Service, *, broker: MemoryBroker | None = None, **overrides: Any
    ) -> None:
        self.service = service
        self.settings: Settings = service.settings.model_copy(
            update={**IN_MEMORY_SETTINGS, **overrides}
        )
        topology = load_settings_topology(self.settings)
        counts = {self.settings.topic(t.name): t.partitions for t in topology}
        self.broker = broker or MemoryBroker(lambda topic: counts.get(topic, 1))
        self.transport = MemoryTransport(self.broker)
        self.registry = CollectorRegistry()
        self.runner = Runner(
            service, settings=self.settings, transport=self.transport, registry=self.registry
        )
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._seen: dict[str, int] = {}
        for store in state_stores(service):
            store._read = self._changelog_reader(store.changelog)

    async def __aenter__(self) -> Self:
        self._task = asyncio.create_task(self.runner.run(self._stop), name="in-memory-service")
        await self.until(lambda: self.runner.ready, "the service to start consuming")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        if self._task is not None:
            await self._task

    # ------------------------------------------------------------------ feeding

    async def send(
        self,
        event_type: str,
        data: Mapping[str, Any],
        *,
        conversation_id: str = "conversation-1",
        tenant_id: str = "tenant-1",
        traceparent: str | None = None,
    ) -> Event:
        """Put one event on its topic, keyed by its conversation; returns it."""
        metadata = Metadata.new(event_type, conversation_id, tenant_id=tenant_id, producer="test")
        event = Event(metadata, dict(data))
        value = self.runner.serde.encode(event)
        headers = event_headers(event_type, metadata.event_id_text, child_traceparent(traceparent))
        self.broker.append(self.settings.topic(event_type), conversation_id, value, headers)
        return event

    async def send_event(self, event: Event, *, traceparent: str | None = None) -> None:
        """Put an event on its topic as it is: its metadata kept (a recorded event, say)."""
        headers = event_headers(
            event.type, event.metadata.event_id_text, child_traceparent(traceparent)
        )
        value = self.runner.serde.encode(event)
        self.broker.append(self.settings.topic(event.type), event.conversation_id, value, headers)

    async def send_raw(
        self, event_type: str, value: bytes | None, *, conversation_id: str = "conversation-1"
    ) -> None:
        """Put raw bytes on an event type's topic (an undecodable record, say)."""
        self.broker.append(self.settings.topic(event_type), conversation_id, value)

    # ------------------------------------------------------------------ awaiting

    async def settle(self, seconds: float = 5.0) -> None:
        """Wait until every record on the service's topics is finished: handled, its
        outputs acknowledged, or dead-lettered."""
        await self.until(self._settled, "every record to be finished", seconds)

    def _settled(self) -> bool:
        runner = self.runner
        if runner.processor.unacked or len(runner.lanes):
            return False
        for topic in runner.routes:
            for partition, log in enumerate(self.broker.partitions(topic)):
                # The end of the records a consumer is handed (transaction markers left out).
                end = next((r.offset() + 1 for r in reversed(log) if not r.control), 0)
                part = runner.partitions.get((topic, partition))
                if not end:
                    continue
                if part is None:
                    return False
                mark = part.watermark()
                if (part.start or 0 if mark is None else mark) < end:
                    return False
        return True

    def outputs(self, event_type: str | None = None) -> list[Event]:
        """The events the handlers emitted (of one type), in each partition's order."""
        topics = [event_type] if event_type else self._emitted_types()
        return [
            self.runner.serde.decode(record.value() or b"")
            for topic in topics
            for record in self._records(self.settings.topic(topic))
        ]

    async def next_output(self, event_type: str, seconds: float = 5.0) -> Event:
        """The next event of ``event_type`` emitted since the last call, waiting for it."""
        record = await self._next(self.settings.topic(event_type), f"a {event_type}", seconds)
        return self.runner.serde.decode(record.value() or b"")

    async def next_dead_letter(self, seconds: float = 5.0) -> dict[str, Any]:
        """The next dead letter since the last call, waiting for it."""
        topic = self.settings.topic(self.settings.dead_letter_topic)
        record = await self._next(topic, "a dead letter", seconds)
        return self.runner.serde.decode_record(record.value() or b"")[1]

    async def _next(self, topic: str, what: str, seconds: float) -> MemoryRecord:
        seen = self._seen.get(topic, 0)
        await self.until(lambda: len(self._records(topic)) > seen, what, seconds)
        self._seen[topic] = seen + 1
        return self._records(topic)[seen]

    def _records(self, topic: str) -> list[MemoryRecord]:
        """What a reader of ``topic`` sees: in exactly-once mode, committed records only."""
        committed = self.settings.processing_guarantee == "exactly_once"
        return self.broker.records(topic, committed=committed)

    def dead_letters(self) -> list[dict[str, Any]]:
        """The dead letters written, as ``pipeline.events.DeadLetter`` records."""
        topic = self.settings.topic(self.settings.dead_letter_topic)
        return [
            self.runner.serde.decode_record(record.value() or b"")[1]
            for record in self._records(topic)
        ]

    # ------------------------------------------------------------------ commits

    def committable(self) -> dict[tuple[str, int], int]:
        """What a commit would write now: each partition's watermark, by (event type,
        partition)."""
        return {
            (self._logical(tp.topic), tp.partition): tp.offset for tp in self.runner.committer.due()
        }

    def committed(self) -> dict[tuple[str, int], TopicPartition]:
        """What the service committed, by (event type, partition)."""
        group = self.runner.group_id
        return {
            (self._logical(topic), partition): tp
            for (g, topic, partition), tp in self.broker.offsets.items()
            if g == group
        }

    async def commit(self) -> None:
        """Commit now, as the periodic commit does."""
        await self.runner.committer.commit_tick(self.runner.on_consumer_thread)

    def fetched(self, event_type: str, partition: int) -> int:
        """How many records of the partition the consumer fetched so far."""
        [consumer] = self.transport.consumers
        return consumer.positions.get((self.settings.topic(event_type), partition), 0)

    async def fetches(self, count: int) -> None:
        """Wait until the runtime fetched ``count`` more times."""
        [consumer] = self.transport.consumers
        wanted = consumer.fetches + count
        await self.until(lambda: consumer.fetches >= wanted, f"{count} more fetches")

    def paused(self) -> set[tuple[str, int]]:
        """Partitions the runtime paused for backpressure, by (event type, partition)."""
        return {(self._logical(t), p) for t, p in self.runner.paused}

    # ------------------------------------------------------------------ helpers

    def _changelog_reader(
        self, changelog: str
    ) -> Callable[[list[str], dict[int, int | None]], dict[int, Restored]]:
        """A state store's restore, from the memory broker's ``changelog`` topic."""
        topic = self.settings.topic(changelog)

        def read(_topics: list[str], starts: dict[int, int | None]) -> dict[int, Restored]:
            logs = self.broker.partitions(topic)
            restored: dict[int, Restored] = {}
            for partition, start in starts.items():
                log = logs[partition] if partition < len(logs) else []
                begin = start if start is not None and start <= len(log) else 0
                result = restored[partition] = Restored(partition, begin, len(log), begin == 0)
                for record in log[begin:]:
                    key, value = record.key(), record.value()
                    if key is None or not record.visible:
                        continue
                    result.values[key.decode()] = None if value is None else decode_value(value)
                    result.records += 1
            return restored

        return read

    def _emitted_types(self) -> list[str]:
        if self.service.emits is not None:
            return list(self.service.emits)
        return self.runner.serde.catalog.event_types

    def _logical(self, topic: str) -> str:
        return topic.removeprefix(self.settings.topic_prefix)

    async def until(self, done: Callable[[], bool], what: str, seconds: float = 5.0) -> None:
        """Wait until ``done()`` is true; TimeoutError naming ``what`` after ``seconds``."""
        deadline = time.monotonic() + seconds
        while not done():
            if self._task is not None and self._task.done():
                await self._task  # raises what stopped the service
                raise RuntimeError(f"the service stopped while waiting for {what}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"no {what} within {seconds:g}s")
            await asyncio.sleep(0.002)
