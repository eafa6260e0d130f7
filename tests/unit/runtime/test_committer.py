"""Watermark commits, run through the real runtime in memory: the committed position never
passes unfinished work, finished offsets above it travel in the metadata, and a record
counts as finished only once what it emitted was acknowledged."""

from __future__ import annotations

import asyncio

from confluent_kafka import TopicPartition

from pipeline.events.model import Event
from pipeline.runtime.committer import position
from pipeline.runtime.context import Context
from pipeline.runtime.offset_tracker import PartitionOffsets, decode_finished
from pipeline.runtime.service import Service
from pipeline.testing import MemoryBroker, TestService
from tests.unit.runtime_events import chat, reply, same_partition

SLOW, FAST = same_partition(2, partitions=12)


def blocking_service(release: asyncio.Event, handled: list[str]) -> Service:
    """The SLOW conversation waits for ``release``; others finish at once."""
    service = Service("committer", emits=["response_ready"])

    @service.handler("message_received")
    async def handle(event: Event, ctx: Context) -> None:
        if event.conversation_id == SLOW:
            await release.wait()
        handled.append(f"{event.conversation_id}:{event['text']}")
        ctx.emit("response_ready", reply(event["text"]))

    return service


async def test_the_committed_position_never_passes_unfinished_work() -> None:
    release, handled = asyncio.Event(), []
    async with TestService(blocking_service(release, handled)) as svc:
        await svc.send("message_received", chat("0"), conversation_id=SLOW)
        await svc.send("message_received", chat("1"), conversation_id=FAST)
        await svc.send("message_received", chat("2"), conversation_id=FAST)
        await svc.until(lambda: len(svc.outputs("response_ready")) == 2, "the fast outputs")
        [(topic, partition)] = svc.committable()
        assert svc.committable() == {(topic, partition): 0}

        await svc.commit()
        held = svc.committed()[(topic, partition)]
        assert held.offset == 0  # offset 0 is still being handled
        assert decode_finished(held.offset, held.metadata) == {1, 2}

        release.set()
        await svc.settle()
        assert svc.committable() == {(topic, partition): 3}
        await svc.commit()
        done = svc.committed()[(topic, partition)]
        assert (done.offset, done.metadata) == (3, None)
    assert handled == [f"{FAST}:1", f"{FAST}:2", f"{SLOW}:0"]


async def test_a_record_is_finished_only_once_its_outputs_are_acknowledged() -> None:
    release, handled = asyncio.Event(), []
    release.set()
    async with TestService(blocking_service(release, handled)) as svc:
        svc.broker.hold_acknowledgements()
        await svc.send("message_received", chat("0"), conversation_id=FAST)
        await svc.until(lambda: handled == [f"{FAST}:0"], "the handler to run")
        await svc.fetches(2)
        assert set(svc.committable().values()) == {0}  # handled, but not acknowledged
        svc.broker.release_acknowledgements()
        await svc.settle()
        assert set(svc.committable().values()) == {1}


async def test_the_next_owner_skips_what_an_earlier_one_finished_above_its_watermark() -> None:
    release, first_run = asyncio.Event(), []
    svc = TestService(blocking_service(release, first_run), drain_timeout_seconds=0.05)
    async with svc:
        await svc.send("message_received", chat("0"), conversation_id=SLOW)
        await svc.send("message_received", chat("1"), conversation_id=FAST)
        await svc.until(lambda: first_run == [f"{FAST}:1"], "the fast conversation")
    # Shut down with offset 0 unfinished: the commit says 0, and that 1 is done.
    broker: MemoryBroker = svc.broker
    [(_, held)] = svc.committed().items()
    assert held.offset == 0

    release.set()
    second_run: list[str] = []
    async with TestService(blocking_service(release, second_run), broker=broker) as again:
        await again.settle()
        assert list(again.committable().values()) == [2]
    assert second_run == [f"{SLOW}:0"]


def test_a_position_without_finished_offsets_above_it_carries_no_metadata() -> None:
    part = PartitionOffsets("message_received", 0)
    for offset in (0, 1, 2):
        part.received(offset)
    part.finished(0)
    part.finished(2)
    with_metadata = position(part)
    assert with_metadata is not None
    assert (with_metadata.offset, decode_finished(1, with_metadata.metadata)) == (1, {2})
    part.finished(1)
    plain = position(part)
    assert plain == TopicPartition("message_received", 0, 3)
    assert plain is not None and plain.metadata is None  # not "", which Kafka stores as NUL
