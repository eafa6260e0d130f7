"""Which responses were sent: a per-partition store backed by a compacted topic.

Keyed like everything else by conversation id, the ``delivery_sent`` topic has the same
partition count as ``response_ready``, so partition N of it records what was sent for the
responses of partition N. The value per conversation is the list of the most recent sent
response ids (a conversation's responses are handled one at a time, in order, so the list
only grows at one place). It is written with the handler's outputs, so it is
acknowledged before the response's offset commits, and read back from the beginning of
the partition when the partition is assigned.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition

from pipeline.errors import BrokerUnavailableError, ConfigError

FORMAT_VERSION = 1


@dataclass(frozen=True, slots=True)
class SentEntry:
    """One response that its channel accepted."""

    response_id: str
    channel: str
    attempt: int
    provider_message_id: str | None
    sent_at_ms: int


class SentStore:
    """Sent response ids per partition and conversation, the newest ``keep`` of each."""

    def __init__(self, keep: int) -> None:
        self.keep = keep
        self._partitions: dict[int, dict[str, list[SentEntry]]] = {}

    @property
    def partitions(self) -> set[int]:
        return set(self._partitions)

    def get(self, partition: int, conversation_id: str, response_id: str) -> SentEntry | None:
        """The entry of ``response_id`` if it was sent, else None."""
        for entry in self._partitions.get(partition, {}).get(conversation_id, ()):
            if entry.response_id == response_id:
                return entry
        return None

    def record(self, partition: int, conversation_id: str, entry: SentEntry) -> bytes:
        """Remember ``entry``; returns the changelog value to write for the conversation."""
        conversations = self._partitions.setdefault(partition, {})
        entries = [*conversations.get(conversation_id, ()), entry][-self.keep :]
        conversations[conversation_id] = entries
        return encode_value(entries)

    def load(self, partition: int, values: dict[str, bytes]) -> None:
        """Replace a partition's entries with the changelog's latest values."""
        self._partitions[partition] = {
            conversation: decode_value(value)[-self.keep :]
            for conversation, value in values.items()
        }

    def drop(self, partitions: Iterable[int]) -> None:
        for partition in partitions:
            self._partitions.pop(partition, None)


def encode_value(entries: list[SentEntry]) -> bytes:
    document = {"v": FORMAT_VERSION, "sent": [asdict(e) for e in entries]}
    return json.dumps(document, separators=(",", ":")).encode()


def decode_value(value: bytes) -> list[SentEntry]:
    document: dict[str, Any] = json.loads(value)
    return [SentEntry(**entry) for entry in document.get("sent", [])]


def read_changelog(
    config: dict[str, Any],
    changelog: str,
    source: str,
    partitions: list[int],
    timeout: float,
) -> dict[int, dict[str, bytes]]:
    """Latest value per key of ``changelog``'s ``partitions``, read from the beginning.

    Blocking (run it in a thread). Refuses to guess: a missing changelog, or one whose
    partition count differs from ``source``'s, raises ConfigError; a read that does not
    reach the end within ``timeout`` raises BrokerUnavailableError.
    """
    consumer = Consumer(
        {
            **config,
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "isolation.level": "read_committed",
            "auto.offset.reset": "earliest",
        }
    )
    try:
        _check_copartitioned(consumer, changelog, source, timeout)
        values: dict[int, dict[str, bytes]] = {p: {} for p in partitions}
        pending = set()
        for partition in partitions:
            low, high = consumer.get_watermark_offsets(
                TopicPartition(changelog, partition), timeout=timeout
            )
            if high > low:
                pending.add(partition)
        if not pending:
            return values
        consumer.assign([TopicPartition(changelog, p, OFFSET_BEGINNING) for p in pending])
        deadline = time.monotonic() + timeout
        while pending:
            if time.monotonic() > deadline:
                raise BrokerUnavailableError(
                    f"restoring {changelog} partitions {sorted(pending)} took over {timeout:g}s"
                )
            for msg in consumer.consume(1000, 0.2):
                err = msg.error()
                partition = msg.partition() or 0
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        pending.discard(partition)
                        continue
                    raise KafkaException(err)
                raw_key = msg.key()
                key = raw_key.decode() if isinstance(raw_key, bytes) else str(raw_key)
                value = msg.value()
                if value is None:
                    values[partition].pop(key, None)
                else:
                    values[partition][key] = value
        return values
    finally:
        consumer.close()


def _check_copartitioned(consumer: Consumer, changelog: str, source: str, timeout: float) -> None:
    topics = consumer.list_topics(timeout=timeout).topics
    counts = {}
    for name in (changelog, source):
        meta = topics.get(name)
        if meta is None or meta.error is not None:
            raise ConfigError(
                f"topic {name} does not exist: create it from topics/ (pipeline topics apply)"
            )
        counts[name] = len(meta.partitions)
    if counts[changelog] != counts[source]:
        raise ConfigError(
            f"{changelog} has {counts[changelog]} partitions and {source} {counts[source]}: "
            "they must match, partition N of one records what was sent for partition N of "
            "the other"
        )
