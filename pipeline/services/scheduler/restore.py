"""Reading the compacted timers topic from the beginning to its end, once, on assignment."""

from __future__ import annotations

import logging
from typing import Any

from pipeline.config import Settings
from pipeline.errors import BrokerUnavailableError
from pipeline.services.scheduler.timers import Ended, Timer
from pipeline.state.changelog import partition_counts, read_changelog

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
        **settings.consumer_config(),
        "group.id": f"{settings.topic_prefix}scheduler-restore",
        "client.id": "scheduler-restore",
    }
    partitions = partition_counts(config, [topic])[topic]
    if partitions == 0:
        raise BrokerUnavailableError(
            f"cannot read the timers topic {topic}: it does not exist (run `pipeline topics apply`)"
        )
    restored = read_changelog(
        config,
        topic,
        dict.fromkeys(range(partitions)),
        _timer,
        timeout=timeout,
        tombstone=Ended.from_headers,
    )
    return [
        state
        for partition in restored.values()
        for state in partition.values.values()
        if state is not None
    ]


def _timer(value: bytes) -> Timer | None:
    try:
        return Timer.decode(value)
    except ValueError as exc:
        log.warning("skipping a timer record: %s", exc)
        return None
