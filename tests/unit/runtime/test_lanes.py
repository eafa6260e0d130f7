"""Per-conversation lanes and the worker pool, run through the real runtime in memory:
order within a conversation, concurrency across conversations, backpressure."""

from __future__ import annotations

import asyncio
import random
from collections import defaultdict

from pipeline.events.model import Event
from pipeline.runtime.context import Context
from pipeline.runtime.service import Service
from pipeline.testing import TestService
from tests.unit.runtime_events import chat, same_partition


async def test_each_conversation_in_order_while_conversations_run_concurrently() -> None:
    service = Service("ordered")
    handled: dict[str, list[int]] = defaultdict(list)
    running = peak = 0

    @service.handler("message_received")
    async def handle(event: Event, ctx: Context) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(random.uniform(0, 0.003))
        handled[event.conversation_id].append(int(event["text"]))
        running -= 1

    # Conversations sharing one partition, interleaved as real traffic arrives.
    conversations = same_partition(8, partitions=12)
    async with TestService(service, max_in_flight=4) as svc:
        for seq in range(15):
            for conversation in random.sample(conversations, len(conversations)):
                await svc.send("message_received", chat(str(seq)), conversation_id=conversation)
        await svc.settle()

    assert handled == {c: list(range(15)) for c in conversations}
    assert 1 < peak <= 4  # concurrent within one partition, never above max_in_flight


async def test_a_partition_with_too_much_unfinished_work_is_paused_then_resumed() -> None:
    service = Service("slow")
    release = asyncio.Event()
    handled: list[int] = []

    @service.handler("message_received")
    async def handle(event: Event, ctx: Context) -> None:
        await release.wait()
        handled.append(int(event["text"]))

    async with TestService(service, max_buffered_per_partition=4) as svc:
        for seq in range(5):
            await svc.send("message_received", chat(str(seq)), conversation_id="c1")
        await svc.until(lambda: bool(svc.paused()), "the partition to pause")
        [(topic, partition)] = svc.paused()
        for seq in range(5, 20):
            await svc.send("message_received", chat(str(seq)), conversation_id="c1")
        # Several fetches later, nothing more was fetched from the paused partition.
        await svc.fetches(3)
        assert svc.fetched(topic, partition) == 5
        release.set()
        await svc.settle()
        await svc.until(lambda: svc.paused() == set(), "the partition to resume")

    assert handled == list(range(20))
