"""A second instance joins mid-run and the first leaves: partitions move with no loss."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Callable

from prometheus_client import CollectorRegistry

from pipeline.events.model import Event
from tests.integration.runtime_support import message, produce_events, read_all_async, settings_for
from tests.integration.service_apps import relay


async def test_partitions_move_between_instances_without_loss_or_reordering(
    kafka_bootstrap: str, topic_prefix: str, make_topics: Callable[..., list[str]]
) -> None:
    conversations, per_conversation = 300, 10
    inputs, outputs, _ = make_topics(
        "message_received", "response_ready", "dead_letters", partitions=6
    )
    half = per_conversation // 2

    def produce_sequences(numbers: range) -> list[Event]:
        return produce_events(
            kafka_bootstrap,
            inputs,
            (message(f"conv-{c}", str(seq)) for seq in numbers for c in range(conversations)),
        )

    # The first half is there before either instance starts; the second half only once the
    # second instance has partitions, so some of it is certainly the second's to handle.
    events = produce_sequences(range(half))
    settings = settings_for(kafka_bootstrap, topic_prefix, max_in_flight=16)
    first, second = relay(settings, max_sleep=0.04), relay(settings, max_sleep=0.04)
    first.registry, second.registry = CollectorRegistry(), CollectorRegistry()
    stop_first, stop_second = asyncio.Event(), asyncio.Event()

    def rebalances(registry: CollectorRegistry, kind: str) -> float:
        labels = {"service": "relay", "kind": kind}
        return registry.get_sample_value("pipeline_rebalances_total", labels) or 0.0

    running_first = asyncio.create_task(first.run(stop_first))
    await read_all_async(kafka_bootstrap, outputs, lambda r: len(r) >= 300, 60)
    running_second = asyncio.create_task(second.run(stop_second))
    # Wait until the group has moved partitions to the newcomer, then let the first go.
    for _ in range(600):
        if rebalances(second.registry, "assigned") > 0:
            break
        await asyncio.sleep(0.05)
    assert rebalances(first.registry, "revoked") > 0, "no partition left the first instance"
    events += produce_sequences(range(half, per_conversation))
    await read_all_async(kafka_bootstrap, outputs, lambda r: len(r) >= 2000, 60)
    stop_first.set()
    await asyncio.wait_for(running_first, 60)

    total = conversations * per_conversation
    records = await read_all_async(kafka_bootstrap, outputs, lambda r: len(r) >= total, 120)
    stop_second.set()
    await asyncio.wait_for(running_second, 60)

    sequences: dict[str, list[int]] = defaultdict(list)
    seen: set[str] = set()
    repeats = 0
    for record in sorted(records, key=lambda r: (r.partition, r.offset)):
        event = record.event()
        if str(event.id) in seen:
            repeats += 1
            continue
        seen.add(str(event.id))
        sequences[event.conversation_id].append(int(event["text"]))
    assert len(seen) == len(events)
    wanted = list(range(per_conversation))
    bad = {c: s for c, s in sequences.items() if s != wanted}
    assert not bad, f"{len(bad)} out of order, e.g. {list(bad.items())[:3]}; {repeats} repeats"
    handled_by_second = second.registry.get_sample_value(
        "pipeline_events_handled_total",
        {
            "service": "relay",
            "handler": "respond",
            "event_type": "message_received",
            "outcome": "success",
        },
    )
    print(f"\nsecond instance handled {handled_by_second:.0f} of {total}; {repeats} repeats")
    assert handled_by_second and handled_by_second > 0
    assert repeats == 0, "a drained, committed revoke hands partitions over without repeats"
