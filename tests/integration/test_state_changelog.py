"""Reading changelog partitions from a real broker, and the store's co-partitioning checks."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from confluent_kafka import Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from pipeline.state import ChangelogStore, StateRestoreError, decode_value, read_changelog
from pipeline.state.changelog import partition_counts
from tests.integration.runtime_support import settings_for


def write(
    bootstrap: str,
    topic: str,
    records: list[tuple[int, str, bytes | None]],
    headers: list[tuple[str, bytes]] | None = None,
) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    for partition, key, value in records:
        producer.produce(topic, value, key, partition=partition, headers=headers)
    assert producer.flush(30) == 0


def config(bootstrap: str) -> dict[str, str]:
    return {"bootstrap.servers": bootstrap, "group.id": "restore-test"}


def test_reads_each_partition_to_its_end_with_tombstones(
    kafka_bootstrap: str, make_topics: Callable[..., list[str]]
) -> None:
    (topic,) = make_topics("agent_state_changelog", partitions=3)
    write(
        kafka_bootstrap,
        topic,
        [
            (0, "a", b'{"n":1}'),
            (0, "b", b'{"n":1}'),
            (0, "a", b'{"n":2}'),
            (0, "b", None),
            (2, "z", b'{"n":9}'),
        ],
    )
    restored = read_changelog(
        config(kafka_bootstrap), topic, {0: None, 1: None, 2: None}, decode_value, timeout=30
    )
    assert restored[0].values == {"a": {"n": 2}, "b": None}
    assert (restored[0].start, restored[0].end, restored[0].records) == (0, 4, 4)
    assert restored[0].full
    assert restored[1].values == {} and restored[1].end == 0
    assert restored[2].values == {"z": {"n": 9}}

    since = read_changelog(config(kafka_bootstrap), topic, {0: 2}, decode_value, timeout=30)
    assert since[0].values == {"a": {"n": 2}, "b": None}
    assert (since[0].start, since[0].full, since[0].records) == (2, False, 2)


def test_a_tombstone_reads_as_what_its_headers_say_when_asked(
    kafka_bootstrap: str, make_topics: Callable[..., list[str]]
) -> None:
    (topic,) = make_topics("scheduler_timers", partitions=1)
    write(kafka_bootstrap, topic, [(0, "t1", None)], headers=[("why", b"fired")])

    def ended(key: str, headers: list[tuple[str, Any]]) -> tuple[str, dict[str, Any]]:
        return key, dict(headers)

    restored = read_changelog(
        config(kafka_bootstrap), topic, {0: None}, decode_value, timeout=30, tombstone=ended
    )
    assert restored[0].values == {"t1": ("t1", {"why": b"fired"})}
    plain = read_changelog(config(kafka_bootstrap), topic, {0: None}, decode_value, timeout=30)
    assert plain[0].values == {"t1": None}


def test_a_start_before_the_log_start_reads_everything_left(
    kafka_bootstrap: str, admin: AdminClient, make_topics: Callable[..., list[str]]
) -> None:
    (topic,) = make_topics("agent_state_changelog", partitions=1)
    write(kafka_bootstrap, topic, [(0, k, b"{}") for k in "abcd"])
    for future in admin.delete_records([TopicPartition(topic, 0, 2)]).values():
        future.result(timeout=30)
    restored = read_changelog(config(kafka_bootstrap), topic, {0: 1}, decode_value, timeout=30)
    assert restored[0].full
    assert restored[0].start == 2
    assert set(restored[0].values) == {"c", "d"}


def test_a_value_that_is_not_state_stops_the_restore(
    kafka_bootstrap: str, make_topics: Callable[..., list[str]]
) -> None:
    (topic,) = make_topics("agent_state_changelog", partitions=1)
    write(kafka_bootstrap, topic, [(0, "ok", b"{}"), (0, "bad", b"not json")])
    with pytest.raises(StateRestoreError, match=r"\[0\]@1 \(key 'bad'\)"):
        read_changelog(config(kafka_bootstrap), topic, {0: None}, decode_value, timeout=30)


async def test_the_store_refuses_topics_that_are_not_co_partitioned(
    kafka_bootstrap: str, topic_prefix: str, make_topics: Callable[..., list[str]]
) -> None:
    make_topics("message_received", partitions=3)
    make_topics("agent_state_changelog", partitions=2)
    settings = settings_for(kafka_bootstrap, topic_prefix)
    store = ChangelogStore(settings, "agent_state_changelog", service="agent")
    assert partition_counts(
        {**settings.consumer_config(), "group.id": "x"},
        [topic_prefix + "agent_state_changelog", topic_prefix + "missing"],
    ) == {topic_prefix + "agent_state_changelog": 2, topic_prefix + "missing": 0}
    with pytest.raises(StateRestoreError, match="co-partitioned"):
        await store.assigned([(topic_prefix + "message_received", 0)])
    assert store.partitions == []


async def test_the_store_refuses_a_missing_changelog(
    kafka_bootstrap: str, topic_prefix: str, make_topics: Callable[..., list[str]]
) -> None:
    make_topics("message_received", partitions=1)
    store = ChangelogStore(
        settings_for(kafka_bootstrap, topic_prefix), "agent_state_changelog", service="agent"
    )
    with pytest.raises(StateRestoreError, match="does not exist"):
        await store.assigned([(topic_prefix + "message_received", 0)])
