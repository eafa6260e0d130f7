"""What a replay reads from Kafka: a conversation's recorded inputs and outputs for one
service, its state as of a moment, and which conversations are the most recent.

Only reads: every consumer here is assigned (never subscribed), never commits, and reads
committed records only.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from confluent_kafka import Consumer, KafkaException, TopicPartition

from pipeline.config import Settings
from pipeline.errors import PipelineError, ReplayError
from pipeline.events.model import Event, to_millis
from pipeline.events.serde import SingleObjectSerde
from pipeline.in_memory import state_stores
from pipeline.partitioner import partition_for
from pipeline.runtime.service import Service
from pipeline.state import read_changelog
from pipeline.state.changelog import METADATA_TIMEOUT_SECONDS, partition_counts, watermarks
from pipeline.timeline import Entry, conversation_timeline

INBOX = "message_received"  # where conversations start: --sample picks from here
SCAN_PER_CONVERSATION = 50  # records of each message_received partition read per sampled one


@dataclass(frozen=True, slots=True)
class Recording:
    """One conversation as one service saw it: the events its handlers took, in the order
    they happened, and the events it emitted in answer to them."""

    conversation_id: str
    service: str
    inputs: tuple[Event, ...]
    outputs: tuple[Event, ...]


def select(
    conversation_id: str,
    events: Iterable[Event],
    service: Service,
    since: datetime | None = None,
) -> Recording:
    """The ``service``'s inputs among a conversation's ``events`` (in their order) and its
    recorded outputs (the events it produced, caused by one of those inputs).

    An input the service emitted itself is not an input of the replay: the replayed
    service emits it again, in memory, and handles that one. ``since`` drops the inputs
    that happened before it.
    """
    handled = {h.event_type for h in service.handlers}
    inputs: dict[str, Event] = {}
    produced: list[Event] = []
    for event in events:
        meta = event.metadata
        if meta.producer == service.name:
            produced.append(event)
        elif meta.event_type in handled and (since is None or meta.occurred_at >= since):
            inputs.setdefault(meta.event_id_text, event)  # a repeat after a crash: once
    outputs = tuple(e for e in produced if str(e.metadata.causation_id) in inputs)
    return Recording(conversation_id, service.name, tuple(inputs.values()), outputs)


def read_conversation(
    settings: Settings, serde: SingleObjectSerde, conversation_id: str
) -> list[Event]:
    """The conversation's events across every conversation topic, by occurred-at."""
    try:
        entries: list[Entry] = conversation_timeline(settings, serde, conversation_id)
    except KafkaException as exc:
        raise ReplayError(f"cannot read conversation {conversation_id!r}: {exc}") from exc
    if not entries:
        raise ReplayError(
            f"no recorded events for conversation {conversation_id!r} on "
            f"{settings.bootstrap_servers} (topic prefix {settings.topic_prefix!r})"
        )
    return [entry.event for entry in entries]


def state_as_of(
    settings: Settings, service: Service, conversation_id: str, moment: datetime
) -> list[tuple[str, str, bytes]]:
    """(changelog, key, value): the conversation's state in each of ``service``'s stores
    as the last changelog record written before ``moment`` says (none if there is none)."""
    found: list[tuple[str, str, bytes]] = []
    config = {**settings.consumer_config(), "group.id": f"{settings.topic_prefix}replay"}
    for store in state_stores(service):
        topic = settings.topic(store.changelog)
        count = partition_counts(config, [topic]).get(topic, 0)
        if not count:
            raise ReplayError(f"changelog topic {topic} does not exist")
        partition = partition_for(conversation_id, count)
        end = _offset_at(config, topic, partition, to_millis(moment))
        restored = read_changelog(
            config,
            topic,
            {partition: None},
            lambda value: value,
            timeout=store.restore_timeout_seconds,
            ends={partition: end},
        )
        value = restored[partition].values.get(conversation_id)
        if isinstance(value, bytes):
            found.append((store.changelog, conversation_id, value))
    return found


def _offset_at(config: dict[str, str], topic: str, partition: int, millis: int) -> int:
    """The first offset of a record written at or after ``millis`` (past the end if none)."""
    consumer = Consumer({**config, "enable.auto.commit": False})
    try:
        [found] = consumer.offsets_for_times(
            [TopicPartition(topic, partition, millis)], timeout=METADATA_TIMEOUT_SECONDS
        )
    except KafkaException as exc:
        raise ReplayError(f"cannot look up {topic}[{partition}] by time: {exc}") from exc
    finally:
        consumer.close()
    return found.offset if found.offset >= 0 else 2**62


def recent_conversations(settings: Settings, serde: SingleObjectSerde, count: int) -> list[str]:
    """The ``count`` conversations with the most recent message_received, newest first.

    Reads the last ``SCAN_PER_CONVERSATION * count`` records of each partition.
    """
    topic = settings.topic(INBOX)
    config = {**settings.consumer_config(), "group.id": f"{settings.topic_prefix}replay"}
    try:
        partitions = partition_counts(config, [topic]).get(topic, 0)
    except PipelineError as exc:
        raise ReplayError(f"cannot read {topic}: {exc}") from exc
    if not partitions:
        raise ReplayError(f"topic {topic} does not exist: no conversations to sample")
    consumer = Consumer({**config, "enable.auto.commit": False})
    try:
        deadline = time.monotonic() + METADATA_TIMEOUT_SECONDS
        starts: dict[int, int | None] = {}
        for partition in range(partitions):
            _, high = watermarks(consumer, topic, partition, deadline)
            starts[partition] = max(0, high - SCAN_PER_CONVERSATION * count)
    except PipelineError as exc:
        raise ReplayError(str(exc)) from exc
    finally:
        consumer.close()

    def decode(value: bytes) -> Event | None:
        try:
            return serde.decode(value)
        except PipelineError:
            return None  # not an event: it starts no conversation to sample

    restored = read_changelog(config, topic, starts, decode, timeout=30.0)
    latest = [
        event
        for result in restored.values()
        for event in result.values.values()
        if isinstance(event, Event)
    ]
    latest.sort(key=lambda e: e.metadata.occurred_millis, reverse=True)
    return [e.conversation_id for e in latest[:count]]
