"""The journal of a service's outside calls, per conversation, on a compacted topic.

A service that makes calls outside Kafka (the agent asks a model, the tools service runs
tools) wraps each in a journal step (:mod:`pipeline.journal.steps`):

1. :meth:`Journal.find` the step; if it is ``done`` the recorded result is used and the
   call is not made again;
2. otherwise :meth:`Journal.intent` records it before the call, waiting for the broker's
   acknowledgement (a crash after it finds the call uncertain);
3. :meth:`Journal.done` records the result as soon as the call answered.

What an uncertain step means is the caller's decision, by the call's declared guarantee:
run again (idempotent), run again with the same idempotency key (keyed), or never run
twice (:meth:`Journal.unknown`).

Records are written at once through the runtime's durable publisher
(:attr:`pipeline.runtime.running.Running.durable`): in exactly-once mode outside the
transaction, since the call happened whether or not the transaction that follows
commits; the outputs that a re-handled event produces from a recorded result are then
the same, with the same derived ids. The store is the service's
:class:`~pipeline.state.ChangelogStore` of the journal topic, restored on assignment like
any state. A conversation's value keeps its steps that are still needed: a step whose
event's offset the broker confirmed committed is never needed again, and a conversation
with only such steps is tombstoned by a periodic sweep, so the topic stays as small as
the calls in flight.

A journal whose calls may be asked for again after their event committed (delivery: the
same response may arrive again at another offset, or be redriven from the dead letters)
keeps its steps instead (``expire_committed=False``): the newest ``keep`` of each
conversation, whatever was committed. A journal that replaces an older store on the same
topic reads that store's values through ``upgrade``; a conversation's next write is in
the journal's own form.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Counter

from pipeline.journal.steps import (
    DECIDED,
    DONE,
    INTENT,
    UNKNOWN,
    Step,
    decode_steps,
    encode_steps,
)
from pipeline.runtime.context import Context
from pipeline.runtime.publisher import Publisher
from pipeline.runtime.service import Service
from pipeline.state import ChangelogStore

log = logging.getLogger(__name__)

KEEP_STEPS = 64  # steps kept per conversation at most, needed or not

# Reads a conversation's value written in another format than the journal's own.
Upgrade = Callable[[Mapping[str, Any]], list[Step]]


@dataclass(slots=True)
class _ConversationLock:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    users: int = 0


class JournalMetrics:
    def __init__(self, registry: CollectorRegistry, service: str, journal: str) -> None:
        self.service = service
        self.journal = journal
        self.steps = Counter(
            "pipeline_journal_steps_total",
            "Outside calls through the journal, by kind and outcome: called (recorded, "
            "then made), reused (a recorded result used instead of calling again), repeated "
            "(uncertain, made again), unknown (uncertain and at most once: not made again), "
            "decided (an operator said how an unknown one ended).",
            ["service", "journal", "kind", "outcome"],
            registry=registry,
        )
        self.expired = Counter(
            "pipeline_journal_expired_conversations_total",
            "Conversations whose journal steps were all committed, tombstoned.",
            ["service", "journal"],
            registry=registry,
        ).labels(service, journal)

    def count(self, kind: str, outcome: str) -> None:
        self.steps.labels(self.service, self.journal, kind, outcome).inc()


class Journal:
    """One service's journal topic (``topic``, a logical name), per conversation.

    ``keep`` bounds the steps kept per conversation (the newest). With
    ``expire_committed`` (the default) a step is dropped once its event's offset is
    confirmed committed, and a periodic sweep tombstones conversations left with none;
    without it steps are kept, up to ``keep``, however long ago their event committed.
    ``upgrade`` reads a value that is not in the journal's form (one without ``steps``,
    written by the store the journal replaced on its topic).
    """

    def __init__(
        self,
        service: Service,
        topic: str,
        *,
        keep: int = KEEP_STEPS,
        sweep_seconds: float | None = None,
        expire_committed: bool = True,
        upgrade: Upgrade | None = None,
    ) -> None:
        self.service = service
        self.topic = topic
        self.keep = keep
        self.sweep_seconds = (
            service.settings.journal_sweep_seconds if sweep_seconds is None else sweep_seconds
        )
        self.expire_committed = expire_committed
        self.upgrade = upgrade
        self.store = ChangelogStore(
            service.settings, topic, service=service.name, registry=service.registry
        )
        self.store.attach(service)
        self.metrics = JournalMetrics(service.registry, service.name, topic)
        self._locks: dict[tuple[int, str], _ConversationLock] = {}
        if expire_committed:
            service.background(self._sweep_forever)

    # ------------------------------------------------------------------ a handler's steps

    def find(self, ctx: Context, step_id: str) -> Step | None:
        """The step ``step_id`` of the handled event's conversation, if recorded."""
        for step in self.steps(ctx.partition, ctx.event.conversation_id):
            if step.id == step_id:
                return step
        return None

    def steps(self, partition: int, conversation: str) -> list[Step]:
        """The steps recorded for ``conversation`` of an owned ``partition``, oldest first."""
        return self._decode(self.store.lookup(partition, conversation))

    async def intent(
        self, ctx: Context, step_id: str, kind: str, *, key: str | None = None, attempt: int = 1
    ) -> Step:
        """Record that the call ``step_id`` is about to be made (acknowledged on return)."""
        step = Step(
            step_id, kind, INTENT, (ctx.topic, ctx.partition, ctx.offset), _now_ms(), attempt, key
        )
        await self._write(ctx, step)
        return step

    async def done(self, ctx: Context, step: Step, result: Mapping[str, Any]) -> Step:
        """Record the call's result (acknowledged on return)."""
        finished = step.moved(DONE, _now_ms(), result=dict(result), error=None)
        await self._write(ctx, finished)
        return finished

    async def unknown(self, ctx: Context, step: Step, reason: str) -> Step:
        """Record that an uncertain at-most-once call is not made again."""
        unknown = step.moved(UNKNOWN, _now_ms(), error=reason)
        await self._write(ctx, unknown)
        return unknown

    async def decided(self, ctx: Context, step: Step, result: Mapping[str, Any]) -> Step:
        """Record how an unknown call ended, as an operator decided it."""
        decided = step.moved(DECIDED, _now_ms(), result=dict(result))
        await self._write(ctx, decided)
        return decided

    def count(self, kind: str, outcome: str) -> None:
        self.metrics.count(kind, outcome)

    # ------------------------------------------------------------------ writing

    async def _write(self, ctx: Context, step: Step) -> None:
        conversation = ctx.event.conversation_id
        async with self._lock(ctx.partition, conversation):
            kept = [
                s
                for s in self.steps(ctx.partition, conversation)
                if s.id != step.id and self._needed(s)
            ]
            kept.append(step)
            value = encode_steps(kept[-self.keep :])
            durable = self._durable()
            if durable is None:
                self.store.put(ctx, conversation, value)  # not running: with the outputs
            else:
                await self.store.put_now(ctx.partition, conversation, value, durable)

    def _decode(self, value: Mapping[str, Any] | None) -> list[Step]:
        if value and "steps" not in value and self.upgrade is not None:
            return self.upgrade(value)
        return decode_steps(value)

    def _needed(self, step: Step) -> bool:
        """Whether the step is kept: always without ``expire_committed``, else while the
        event it belongs to may still be handled again (its offset is not confirmed
        committed)."""
        if not self.expire_committed:
            return True
        running = self.service.running
        if running is None:
            return True
        topic, partition, offset = step.source
        committed = running.committed(topic, partition)
        return committed is None or offset >= committed

    def _durable(self) -> Publisher | None:
        running = self.service.running
        return None if running is None else running.durable

    @asynccontextmanager
    async def _lock(self, partition: int, conversation: str) -> AsyncIterator[None]:
        """Hold the conversation's lock; it is dropped once no one holds or awaits it."""
        key = (partition, conversation)
        held = self._locks.get(key)
        if held is None:
            held = self._locks[key] = _ConversationLock()
        held.users += 1
        try:
            async with held.lock:
                yield
        finally:
            held.users -= 1
            if held.users == 0:
                del self._locks[key]

    # ------------------------------------------------------------------ expiry

    async def _sweep_forever(self, _: Publisher) -> None:
        while True:
            await asyncio.sleep(self.sweep_seconds)
            try:
                await self.sweep()
            except Exception as exc:  # Kafka away: the next sweep tries again
                log.warning("journal %s: sweep failed (%s); trying again later", self.topic, exc)

    async def sweep(self) -> int:
        """Tombstone every conversation whose steps are all committed; how many were
        (none without ``expire_committed``)."""
        durable = self._durable()
        if durable is None or not self.expire_committed:
            return 0
        expired = 0
        for partition in self.store.partitions:
            for conversation, value in list(self.store.items(partition)):
                if any(self._needed(s) for s in self._decode(value)):
                    continue
                async with self._lock(partition, conversation):
                    value = self.store.lookup(partition, conversation) or {}
                    if any(self._needed(s) for s in self._decode(value)):
                        continue
                    if partition not in self.store.partitions:
                        break  # revoked meanwhile: its next owner sweeps it
                    await self.store.delete_now(partition, conversation, durable)
                    expired += 1
        if expired:
            self.metrics.expired.inc(expired)
            log.debug("journal %s: %d conversations expired", self.topic, expired)
        return expired


def _now_ms() -> int:
    return int(time.time() * 1000)
