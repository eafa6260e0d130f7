"""Reading a recorded set's conversations from Kafka, one conversation at a time.

The set's partitions are read one partition number at a time, every conversation topic
at once, from the first offset any of its conversations needs to the last. A record of a
conversation the set does not name is skipped without being decoded. A conversation is
handed over as soon as the last of its records has been read in every topic, so what is
held is the conversations still being read, never the whole set. A conversation whose
last records are gone (the topic's retention deleted them) is handed over with what was
read once its partition has been read to the end.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from confluent_kafka import Consumer, KafkaException

from pipeline.config import Settings
from pipeline.errors import EvaluationError, PipelineError
from pipeline.evaluation.partition_scan import Where, key_text, reader, scan
from pipeline.evaluation.recorded_set import RecordedConversation, RecordedSet
from pipeline.events.model import Event
from pipeline.events.serde import SingleObjectSerde


@dataclass(frozen=True, slots=True)
class RecordedEvents:
    """A conversation of the set and its recorded events, in the order they happened."""

    conversation: RecordedConversation
    events: tuple[Event, ...]
    complete: bool = True  # False: some of its records were no longer in the topics


def read_set(
    settings: Settings, serde: SingleObjectSerde, recorded: RecordedSet
) -> Iterator[RecordedEvents]:
    """Each conversation of ``recorded`` with its events, as soon as it has been read."""
    try:
        with reader(settings) as consumer:
            for partition, conversations in recorded.by_partition().items():
                yield from _read_partition(consumer, settings, serde, partition, conversations)
    except KafkaException as exc:
        raise EvaluationError(f"cannot read the recorded conversations: {exc}") from exc


def _read_partition(
    consumer: Consumer,
    settings: Settings,
    serde: SingleObjectSerde,
    partition: int,
    conversations: list[RecordedConversation],
) -> Iterator[RecordedEvents]:
    wanted = {c.conversation_id: c for c in conversations}
    logical = {settings.topic(t): t for c in conversations for t in c.offsets}
    ranges: dict[Where, tuple[int, int]] = {}
    for c in conversations:
        for topic, (first, last) in c.offsets.items():
            where = (settings.topic(topic), partition)
            start, end = ranges.get(where, (first, last + 1))
            ranges[where] = (min(start, first), max(end, last + 1))
    unread = {c.conversation_id: dict(c.offsets) for c in conversations}
    read: dict[str, list[tuple[int, str, int, Event]]] = {}
    for msg in scan(consumer, ranges):
        conversation_id = key_text(msg)
        if conversation_id not in wanted:
            continue
        topic, offset = logical[msg.topic() or ""], msg.offset() or 0
        first, last = wanted[conversation_id].offsets.get(topic, (1, 0))
        if not first <= offset <= last:
            continue
        try:
            event = serde.decode(msg.value() or b"")
        except PipelineError:
            continue  # what the service could not decode either: it was dead-lettered
        events = read.setdefault(conversation_id, [])
        events.append((event.metadata.occurred_millis, topic, offset, event))
        remaining = unread[conversation_id]
        if offset >= last:
            remaining.pop(topic, None)
        if not remaining:
            del unread[conversation_id]
            yield _recorded(wanted[conversation_id], read.pop(conversation_id), True)
    for conversation_id in list(unread):  # records gone since the set was made
        yield _recorded(wanted[conversation_id], read.pop(conversation_id, []), False)


def _recorded(
    conversation: RecordedConversation, events: list[tuple[int, str, int, Event]], complete: bool
) -> RecordedEvents:
    # The order of `pipeline timeline`: by occurred-at, then topic and offset.
    events.sort(key=lambda item: item[:3])
    return RecordedEvents(conversation, tuple(item[3] for item in events), complete)
