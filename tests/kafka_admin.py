"""What Kafka's Admin API says about topics and groups, as Kafka's own tools read it.

- :func:`end_offsets`: each partition's high watermark, or its last stable offset (the
  end a ``read_committed`` reader may read to: the first offset of a transaction still
  open).
- :func:`wait_stable`: wait until every partition's last stable offset reached its high
  watermark (no transaction left open), so a ``read_committed`` read sees everything.
- :func:`group_lag`: a group's lag per partition, high watermark minus committed offset,
  the figure ``kafka-consumer-groups.sh --describe`` prints.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from confluent_kafka import ConsumerGroupTopicPartitions, IsolationLevel, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec

QUIET = {"log_level": 2}
TIMEOUT = 15.0


def _admin(bootstrap: str) -> AdminClient:
    return AdminClient({"bootstrap.servers": bootstrap, **QUIET})


def partitions_of(bootstrap: str, topic: str) -> list[TopicPartition]:
    meta = _admin(bootstrap).list_topics(topic, timeout=TIMEOUT).topics[topic]
    return [TopicPartition(topic, p) for p in sorted(meta.partitions)]


def end_offsets(bootstrap: str, topic: str, *, stable: bool = False) -> dict[int, int]:
    """Each partition's high watermark, or with ``stable`` its last stable offset."""
    level = IsolationLevel.READ_COMMITTED if stable else IsolationLevel.READ_UNCOMMITTED
    admin = _admin(bootstrap)  # kept until the answers are in: a dropped client drops them
    futures = admin.list_offsets(
        {tp: OffsetSpec.latest() for tp in partitions_of(bootstrap, topic)},
        isolation_level=level,
        request_timeout=TIMEOUT,
    )
    return {tp.partition: future.result(TIMEOUT).offset for tp, future in futures.items()}


def open_transactions(bootstrap: str, topics: Iterable[str]) -> dict[tuple[str, int], int]:
    """Partitions whose last stable offset is behind the high watermark, by how much."""
    behind = {}
    for topic in topics:
        high, stable = end_offsets(bootstrap, topic), end_offsets(bootstrap, topic, stable=True)
        for partition, end in high.items():
            if stable[partition] < end:
                behind[(topic, partition)] = end - stable[partition]
    return behind


def wait_stable(
    bootstrap: str, topics: Iterable[str], timeout: float
) -> dict[tuple[str, int], int]:
    """Wait until no partition of ``topics`` has a transaction open; returns the ones
    still behind at the timeout (empty when all are stable)."""
    names = list(topics)
    deadline = time.monotonic() + timeout
    while True:
        try:
            behind = open_transactions(bootstrap, names)
        except Exception:  # a broker coming back: ask again
            behind = {("?", -1): -1}
        if not behind or time.monotonic() > deadline:
            return behind
        time.sleep(0.5)


def group_lag(bootstrap: str, group: str, topic: str) -> dict[int, int]:
    """The group's lag on each partition of ``topic`` (no committed offset: the whole
    partition)."""
    high = end_offsets(bootstrap, topic)
    request = ConsumerGroupTopicPartitions(group, partitions_of(bootstrap, topic))
    admin = _admin(bootstrap)
    answer = admin.list_consumer_group_offsets([request], request_timeout=TIMEOUT)
    listed = answer[group].result(TIMEOUT).topic_partitions
    committed = {tp.partition: tp.offset for tp in listed if tp.offset >= 0}
    return {partition: end - committed.get(partition, 0) for partition, end in high.items()}
