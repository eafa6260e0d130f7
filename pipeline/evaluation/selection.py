"""Choosing the recorded conversations an evaluation reads, from Kafka.

A conversation is chosen by its user messages: those on ``message_received`` between
``since`` and ``until`` (all that the topic keeps by default), of the ``tenants`` and
``channels`` asked for (all by default). ``sample`` keeps that many of them, drawn at
random with ``seed`` (the same draw every time); ``conversation_ids`` names them instead.
Then every conversation topic's partition holding the chosen conversations is read once,
by key only (no record is decoded), for the offsets of each conversation's first and last
record: the :class:`~pipeline.evaluation.recorded_set.RecordedSet` an evaluation reads,
whole, from the conversation's start.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from confluent_kafka import Consumer, KafkaException

from pipeline.config import Settings
from pipeline.errors import EvaluationError, PipelineError
from pipeline.evaluation.partition_scan import (
    Where,
    key_text,
    offset_at,
    reader,
    scan,
    watermarks,
)
from pipeline.evaluation.recorded_set import RecordedConversation, RecordedSet
from pipeline.events.model import to_millis
from pipeline.events.serde import SingleObjectSerde
from pipeline.partitioner import partition_for
from pipeline.topology import load_settings_topology

INBOX = "message_received"  # where a conversation's user messages are


@dataclass(frozen=True, slots=True)
class Selection:
    """Which recorded conversations to read (see the module's docstring)."""

    tenants: tuple[str, ...] = ()
    channels: tuple[str, ...] = ()
    since: datetime | None = None
    until: datetime | None = None
    sample: int | None = None
    seed: int = 0
    conversation_ids: tuple[str, ...] = ()

    def as_json(self) -> dict[str, Any]:
        return {
            "tenants": list(self.tenants),
            "channels": list(self.channels),
            "since": self.since.isoformat() if self.since else None,
            "until": self.until.isoformat() if self.until else None,
            "sample": self.sample,
            "seed": self.seed,
            "conversation_ids": list(self.conversation_ids),
        }

    def describe(self) -> str:
        parts = [f"tenant {', '.join(self.tenants)}" if self.tenants else "every tenant"]
        parts.append(f"channel {', '.join(self.channels)}" if self.channels else "every channel")
        if self.since or self.until:
            parts.append(f"from {self.since or 'the start'} to {self.until or 'now'}")
        return ", ".join(parts)


@dataclass(slots=True)
class _Found:
    tenant: str
    channel: str
    partition: int
    first_millis: int


def select(settings: Settings, serde: SingleObjectSerde, selection: Selection) -> RecordedSet:
    """The recorded set ``selection`` describes, read from the cluster of ``settings``."""
    try:
        with reader(settings) as consumer:
            count = _partitions(consumer, settings.topic(INBOX))
            found = (
                _named(selection.conversation_ids, count)
                if selection.conversation_ids
                else _from_inbox(consumer, settings, serde, selection, count)
            )
            chosen = _sample(found, selection)
            if not chosen:
                raise EvaluationError(
                    f"no recorded conversation in {settings.topic(INBOX)} for "
                    f"{selection.describe()}"
                )
            conversations = _locate(consumer, settings, serde, chosen)
    except KafkaException as exc:
        raise EvaluationError(f"cannot read the recorded conversations: {exc}") from exc
    return RecordedSet(tuple(conversations), settings.topic_prefix, selection.as_json())


def _partitions(consumer: Consumer, topic: str) -> int:
    meta = consumer.list_topics(topic, timeout=10.0).topics.get(topic)
    if meta is None or meta.error is not None or not meta.partitions:
        raise EvaluationError(f"topic {topic} does not exist: no recorded conversations")
    return len(meta.partitions)


def _named(conversation_ids: tuple[str, ...], count: int) -> dict[str, _Found]:
    return {c: _Found("", "", partition_for(c, count), i) for i, c in enumerate(conversation_ids)}


def _from_inbox(
    consumer: Consumer,
    settings: Settings,
    serde: SingleObjectSerde,
    selection: Selection,
    count: int,
) -> dict[str, _Found]:
    """Conversations with a user message in the time range, of the tenants and channels."""
    topic = settings.topic(INBOX)
    ranges: dict[Where, tuple[int, int]] = {}
    for partition in range(count):
        where = (topic, partition)
        low, high = watermarks(consumer, where)
        start = offset_at(consumer, where, to_millis(selection.since)) if selection.since else low
        end = offset_at(consumer, where, to_millis(selection.until)) if selection.until else high
        ranges[where] = (start if start is not None else high, end if end is not None else high)
    found: dict[str, _Found] = {}
    for msg in scan(consumer, ranges):
        try:
            event = serde.decode(msg.value() or b"")
        except PipelineError:
            continue  # not an event: it starts no conversation to evaluate
        meta = event.metadata
        channel = str(event.get("channel") or "")
        if meta.conversation_id in found:
            continue
        if selection.tenants and meta.tenant_id not in selection.tenants:
            continue
        if selection.channels and channel not in selection.channels:
            continue
        found[meta.conversation_id] = _Found(
            meta.tenant_id, channel, msg.partition() or 0, meta.occurred_millis
        )
    return found


def _sample(found: dict[str, _Found], selection: Selection) -> dict[str, _Found]:
    """``sample`` of the conversations drawn with ``seed``, oldest first."""
    ids = sorted(found, key=lambda c: (found[c].first_millis, c))
    if selection.sample is not None and selection.sample < len(ids):
        drawn = set(random.Random(selection.seed).sample(ids, selection.sample))
        ids = [c for c in ids if c in drawn]
    return {c: found[c] for c in ids}


def _locate(
    consumer: Consumer,
    settings: Settings,
    serde: SingleObjectSerde,
    chosen: dict[str, _Found],
) -> list[RecordedConversation]:
    """Each chosen conversation's first and last offset in every conversation topic."""
    logical = {
        settings.topic(t.name): t.name
        for t in load_settings_topology(settings)
        if t.kind == "conversation"
    }
    existing = consumer.list_topics(timeout=10.0).topics
    partitions = {found.partition for found in chosen.values()}
    ranges: dict[Where, tuple[int, int]] = {}
    for physical in logical:
        meta = existing.get(physical)
        if meta is None or meta.error is not None:
            continue
        for partition in partitions & set(meta.partitions):
            ranges[(physical, partition)] = watermarks(consumer, (physical, partition))
    offsets: dict[str, dict[str, tuple[int, int]]] = {c: {} for c in chosen}
    inbox = settings.topic(INBOX)
    for msg in scan(consumer, ranges):
        conversation = key_text(msg)
        if conversation not in offsets:
            continue
        topic, offset = logical[msg.topic() or ""], msg.offset() or 0
        first, _ = offsets[conversation].get(topic, (offset, offset))
        offsets[conversation][topic] = (min(first, offset), offset)
        found = chosen[conversation]
        if msg.topic() == inbox and not found.tenant:  # named, not drawn from the inbox
            try:
                event = serde.decode(msg.value() or b"")
            except PipelineError:
                continue
            found.tenant, found.channel = event.metadata.tenant_id, str(event.get("channel"))
    missing = [c for c, spans in offsets.items() if not spans]
    if missing:
        raise EvaluationError(f"no recorded events for conversation(s) {', '.join(missing)}")
    return [
        RecordedConversation(c, found.tenant, found.channel, found.partition, offsets[c])
        for c, found in chosen.items()
    ]
