"""Per-conversation order under concurrency, and concurrency well beyond one per partition."""

from __future__ import annotations

import asyncio
import random
import time
from collections import defaultdict
from collections.abc import Callable

import anyio
from prometheus_client import CollectorRegistry

from pipeline.events.model import Event
from pipeline.runtime.context import Context
from pipeline.runtime.service import Service
from tests.integration.runtime_support import (
    message,
    produce_events,
    read_all_async,
    running,
    settings_for,
)
from tests.integration.service_apps import relay


async def test_every_conversation_in_order_none_missing_none_duplicated(
    kafka_bootstrap: str, topic_prefix: str, make_topics: Callable[..., list[str]]
) -> None:
    conversations, per_conversation = 1000, 20
    inputs, outputs, _ = make_topics(
        "message_received", "response_ready", "dead_letters", partitions=6
    )
    # Interleave conversations the way real traffic arrives.
    events = [
        message(f"conv-{c}", str(seq))
        for seq in range(per_conversation)
        for c in random.sample(range(conversations), conversations)
    ]
    produce_events(kafka_bootstrap, inputs, events)
    registry = CollectorRegistry()
    settings = settings_for(kafka_bootstrap, topic_prefix, max_in_flight=128)
    service = relay(settings, max_sleep=0.02)
    service.registry = registry
    peak = 0

    async def watch_in_flight() -> None:
        nonlocal peak
        while True:
            value = registry.get_sample_value("pipeline_events_in_flight", {"service": "relay"})
            peak = max(peak, int(value or 0))
            await asyncio.sleep(0.005)

    total = conversations * per_conversation
    async with running(service):
        watcher = asyncio.create_task(watch_in_flight())
        records = await read_all_async(kafka_bootstrap, outputs, lambda r: len(r) >= total, 300)
        # Anything extra (a duplicate) would arrive right behind; give it a moment.
        await asyncio.sleep(1)
        records = await read_all_async(kafka_bootstrap, outputs, lambda r: len(r) >= total, 5)
        watcher.cancel()

    by_conversation: dict[str, list[int]] = defaultdict(list)
    for record in sorted(records, key=lambda r: (r.partition, r.offset)):
        event = record.event()
        assert record.key == event.conversation_id
        by_conversation[event.conversation_id].append(int(event["text"]))
    assert len(by_conversation) == conversations
    wanted = list(range(per_conversation))
    wrong = {c: seqs for c, seqs in by_conversation.items() if seqs != wanted}
    assert not wrong, f"{len(wrong)} conversations out of order or incomplete, e.g. " + str(
        next(iter(wrong.items()))
    )
    assert len(records) == total
    print(f"\n{total} events, {conversations} conversations; peak in flight {peak}")
    assert peak >= 64, f"peak in flight was {peak}, wanted at least 64"


async def test_concurrency_within_partitions_beats_one_at_a_time_tenfold(
    kafka_bootstrap: str, topic_prefix: str, make_topics: Callable[..., list[str]]
) -> None:
    inputs, outputs, _ = make_topics(
        "message_received", "response_ready", "dead_letters", partitions=2
    )
    produce_events(kafka_bootstrap, inputs, (message(f"conv-{c}", "x") for c in range(1000)))
    spans: list[tuple[float, float]] = []
    settings = settings_for(kafka_bootstrap, topic_prefix, max_in_flight=256)
    service = Service("sleeper", settings=settings)

    @service.handler("message_received")
    async def slow(event: Event, ctx: Context) -> None:
        started = time.monotonic()
        await asyncio.sleep(0.1)
        ctx.emit("response_ready", {"reply_to": event["reply_to"], "text": "done"})
        spans.append((started, time.monotonic()))

    async with running(service):
        records = await read_all_async(kafka_bootstrap, outputs, lambda r: len(r) >= 1000, 120)

    assert len(records) == 1000
    assert len(spans) == 1000
    wall = max(end for _, end in spans) - min(start for start, _ in spans)
    # One at a time per partition: each partition's handlers back to back, partitions in
    # parallel. The shortest measured handler time keeps the bound conservative.
    per_partition = 1000 / 2 * min(end - start for start, end in spans)
    speedup = per_partition / wall
    print(
        f"\nhandled 1000 x 100 ms in {wall:.2f}s; one-at-a-time per partition would take "
        f"{per_partition:.1f}s: {speedup:.1f}x faster"
    )
    assert speedup >= 10


async def test_handlers_run_in_worker_tasks_where_timeouts_and_cancel_scopes_work(
    kafka_bootstrap: str, topic_prefix: str, make_topics: Callable[..., list[str]]
) -> None:
    inputs, outputs, dead = make_topics(
        "message_received", "response_ready", "dead_letters", partitions=2
    )
    produce_events(kafka_bootstrap, inputs, (message(f"conv-{c}", str(c)) for c in range(200)))
    settings = settings_for(kafka_bootstrap, topic_prefix, max_in_flight=8, max_retries=0)
    service = Service("scoped", settings=settings)
    tasks: set[asyncio.Task[object]] = set()

    @service.handler("message_received")
    async def scoped(event: Event, ctx: Context) -> None:
        task = asyncio.current_task()
        assert task is not None
        tasks.add(task)
        # Both scope kinds belong to the task they were entered in: the handler must
        # start and finish in one task, across its awaits.
        with anyio.CancelScope():
            async with asyncio.timeout(5):
                await asyncio.sleep(0.001)
        if event["text"] == "7":
            async with asyncio.timeout(0.01):  # this one expires: a handler error
                await asyncio.sleep(1)
        ctx.emit("response_ready", {"reply_to": event["reply_to"], "text": event["text"]})

    async with running(service) as run:
        records = await read_all_async(kafka_bootstrap, outputs, lambda r: len(r) >= 199, 60)
        letters = await read_all_async(kafka_bootstrap, dead, lambda r: len(r) >= 1, 60)
        assert run not in tasks, "handlers must not run in the service's own task"

    assert sorted(int(r.event()["text"]) for r in records) == [c for c in range(200) if c != 7]
    assert len(letters) == 1
    assert 1 < len(tasks) <= 8, f"{len(tasks)} tasks ran handlers; the pool has 8 workers"
