"""What the runtime commits, read back through Kafka's Admin API."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition
from confluent_kafka.admin import AdminClient  # type: ignore[attr-defined]

from pipeline.events.model import Event
from pipeline.runtime.context import Context
from pipeline.runtime.offset_tracker import decode_finished
from pipeline.runtime.service import Service
from tests.integration.runtime_support import (
    message,
    produce_events,
    read_all_async,
    running,
    settings_for,
)


def group_offsets(admin: AdminClient, group: str, topic: str) -> dict[int, TopicPartition]:
    request = ConsumerGroupTopicPartitions(group, [TopicPartition(topic, 0)])
    [future] = admin.list_consumer_group_offsets([request]).values()
    return {tp.partition: tp for tp in future.result(timeout=30).topic_partitions}


async def test_commits_carry_metadata_only_for_finished_offsets_above_the_watermark(
    kafka_bootstrap: str,
    topic_prefix: str,
    admin: AdminClient,
    make_topics: Callable[..., list[str]],
) -> None:
    inputs, outputs, _ = make_topics("message_received", "response_ready", "dead_letters")
    settings = settings_for(kafka_bootstrap, topic_prefix, drain_timeout_seconds=0.5)
    service = Service("committing", settings=settings, emits=["response_ready"])
    release = asyncio.Event()

    @service.handler("message_received")
    async def respond(event: Event, ctx: Context) -> None:
        if event["text"] == "slow":
            await release.wait()
        ctx.emit("response_ready", {"reply_to": event["reply_to"], "text": event["text"]})

    group = f"{topic_prefix}committing"
    # First run: offset 0 never finishes, 1 and 2 do; the shutdown commit says so.
    produce_events(
        kafka_bootstrap, inputs, [message("a", "slow"), message("b", "1"), message("c", "2")]
    )
    async with running(service):
        await read_all_async(kafka_bootstrap, outputs, lambda r: len(r) >= 2, 60)
    held = group_offsets(admin, group, inputs)[0]
    assert held.offset == 0
    assert decode_finished(0, held.metadata) == {1, 2}

    # Second run: offset 0 finishes, nothing is left above the watermark.
    release.set()
    service.registry = type(service.registry)()
    async with running(service):
        records = await read_all_async(kafka_bootstrap, outputs, lambda r: len(r) >= 3, 60)
    assert sorted(r.event()["text"] for r in records) == ["1", "2", "slow"]  # 1, 2 skipped
    done = group_offsets(admin, group, inputs)[0]
    assert done.offset == 3
    # No metadata at all. An empty string would go out as one NUL byte, which this client
    # reads back as "" rather than None.
    assert done.metadata is None, f"metadata should be absent, was {done.metadata!r}"
