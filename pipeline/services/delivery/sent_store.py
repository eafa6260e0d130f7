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
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

from confluent_kafka import Consumer

from pipeline.errors import ConfigError
from pipeline.state.changelog import read_changelog as read_partitions

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
    """Sent response ids per partition and conversation, the newest ``keep`` of each.

    Each entry is kept with its encoded form, so writing a conversation's value after a
    send encodes only the new entry, not the ``keep`` before it again.
    """

    def __init__(self, keep: int) -> None:
        self.keep = keep
        self._partitions: dict[int, dict[str, list[tuple[SentEntry, bytes]]]] = {}

    @property
    def partitions(self) -> set[int]:
        return set(self._partitions)

    def get(self, partition: int, conversation_id: str, response_id: str) -> SentEntry | None:
        """The entry of ``response_id`` if it was sent, else None."""
        for entry, _ in self._partitions.get(partition, {}).get(conversation_id, ()):
            if entry.response_id == response_id:
                return entry
        return None

    def record(self, partition: int, conversation_id: str, entry: SentEntry) -> bytes:
        """Remember ``entry``; returns the changelog value to write for the conversation."""
        conversations = self._partitions.setdefault(partition, {})
        entries = conversations.setdefault(conversation_id, [])
        entries.append((entry, _encode_entry(entry)))
        del entries[: -self.keep]
        return _join([encoded for _, encoded in entries])

    def load(self, partition: int, values: dict[str, bytes]) -> None:
        """Replace a partition's entries with the changelog's latest values."""
        self._partitions[partition] = {
            conversation: [(e, _encode_entry(e)) for e in decode_value(value)[-self.keep :]]
            for conversation, value in values.items()
        }

    def drop(self, partitions: Iterable[int]) -> None:
        for partition in partitions:
            self._partitions.pop(partition, None)


def encode_value(entries: list[SentEntry]) -> bytes:
    """A conversation's changelog value: ``{"v":1,"sent":[entry, ...]}``, compact JSON."""
    return _join([_encode_entry(e) for e in entries])


def _encode_entry(entry: SentEntry) -> bytes:
    return json.dumps(asdict(entry), separators=(",", ":")).encode()


def _join(encoded: list[bytes]) -> bytes:
    # The same bytes as json.dumps({"v": ..., "sent": [...]}, separators=(",", ":")).
    return b'{"v":%d,"sent":[%b]}' % (FORMAT_VERSION, b",".join(encoded))


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
    reach the end within ``timeout`` raises StateRestoreError.
    """
    consumer = Consumer({**config, "enable.auto.commit": False})
    try:
        _check_copartitioned(consumer, changelog, source, timeout)
    finally:
        consumer.close()
    restored = read_partitions(config, changelog, dict.fromkeys(partitions), bytes, timeout=timeout)
    return {
        p: {key: value for key, value in r.values.items() if value is not None}
        for p, r in restored.items()
    }


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
