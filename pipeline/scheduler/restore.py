"""Reading the compacted timers topic from the beginning to its end, once, on assignment."""

from __future__ import annotations

import logging
import time
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

from pipeline.config import Settings
from pipeline.errors import BrokerUnavailableError
from pipeline.scheduler.timers import Ended, Timer
from pipeline.state.changelog import watermarks

log = logging.getLogger(__name__)

TIMERS_TOPIC = "scheduler_timers"


def read_timers(settings: Settings, timeout: float) -> list[Timer | Ended]:
    """The latest state of every timer id in the topic: pending timers, and the tombstones
    that still say which partition they came from. Blocking: call it in a thread.

    The whole topic is read, not just some partitions: it is keyed by timer id, so a
    conversation partition's timers are spread over all of its partitions.
    """
    topic = settings.topic(TIMERS_TOPIC)
    config: dict[str, Any] = {
        "auto.offset.reset": "earliest",
        **settings.consumer_config(),
        "group.id": f"{settings.topic_prefix}scheduler-restore",
        "client.id": "scheduler-restore",
        "enable.auto.commit": False,
        "enable.partition.eof": True,
        "isolation.level": "read_committed",
    }
    consumer = Consumer(config)
    deadline = time.monotonic() + timeout
    latest: dict[str, Timer | Ended | None] = {}
    try:
        metadata = consumer.list_topics(topic, timeout=min(10.0, timeout))
        found = metadata.topics.get(topic)
        if found is None or found.error is not None:
            raise BrokerUnavailableError(
                f"cannot read the timers topic {topic}: "
                f"{found.error if found else 'it does not exist'} (run `pipeline topics apply`)"
            )
        remaining: dict[int, int] = {}
        for partition in found.partitions:
            low, high = watermarks(consumer, topic, partition, deadline)
            if high > low:
                remaining[partition] = high
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in sorted(remaining)])
        count = 0
        while remaining:
            if time.monotonic() > deadline:
                raise BrokerUnavailableError(
                    f"restoring timers from {topic} took longer than {timeout:g}s "
                    f"({count} records read, partitions {sorted(remaining)} unfinished)"
                )
            for msg in consumer.consume(1000, 0.2):
                err = msg.error()
                partition = msg.partition() or 0
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        remaining.pop(partition, None)
                        continue
                    raise BrokerUnavailableError(f"reading {topic} failed: {err}")
                count += 1
                offset = msg.offset() or 0
                if offset >= remaining.get(partition, 0) - 1:
                    remaining.pop(partition, None)
                key = msg.key()
                if key is None:
                    continue
                timer_id = key.decode() if isinstance(key, bytes) else key
                latest[timer_id] = _state(timer_id, msg.value(), msg.headers() or [])
    finally:
        consumer.close()
    return [state for state in latest.values() if state is not None]


def _state(timer_id: str, value: bytes | None, headers: Any) -> Timer | Ended | None:
    if value is None:
        return Ended.from_headers(timer_id, headers)
    try:
        return Timer.decode(value)
    except ValueError as exc:
        log.warning("skipping timer %r: %s", timer_id, exc)
        return None
