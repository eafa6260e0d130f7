"""Which responses were sent or are being sent: a per-partition store backed by a
compacted topic.

Keyed like everything else by conversation id, the ``delivery_sent`` topic has the same
partition count as ``response_ready``, so partition N of it records what was sent for the
responses of partition N. The value per conversation is the list of its most recent
responses with where each stands (a conversation's responses are handled one at a time,
in order, so the list only changes at its end): ``attempted`` is written (and
acknowledged) before each send, then ``sent``, ``refused`` (the channel answered that it
did not take it; a retry follows) or ``failed`` as soon as the channel answered. A
response read back as ``attempted`` was being sent when its instance stopped: whether the
channel took it is *uncertain* (:mod:`pipeline.services.delivery.uncertain`). The
partition is read back from the beginning when it is assigned.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer

from pipeline.errors import ConfigError
from pipeline.state.changelog import read_changelog as read_partitions

FORMAT_VERSION = 1

ATTEMPTED = "attempted"
SENT = "sent"
REFUSED = "refused"
FAILED = "failed"
UNCONFIRMED = "unconfirmed"


@dataclass(frozen=True, slots=True)
class SentEntry:
    """Where one response stands: ``state`` is ``sent`` (the channel accepted it),
    ``attempted`` (attempt ``attempt`` went out at ``sent_at_ms``, no answer recorded),
    ``refused`` (the channel refused that attempt; another follows), ``failed``, or
    ``unconfirmed`` (an uncertain attempt not repeated: at-most-once; ``error`` says why).

    Entries written before the state existed were all sent, hence its default.
    """

    response_id: str
    channel: str
    attempt: int
    provider_message_id: str | None
    sent_at_ms: int
    state: str = SENT
    error: str | None = None

    @property
    def uncertain(self) -> bool:
        """An attempt went out and no answer was recorded: it may have arrived."""
        return self.state == ATTEMPTED


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
        """The entry of ``response_id`` if it was attempted or sent, else None."""
        for entry, _ in self._partitions.get(partition, {}).get(conversation_id, ()):
            if entry.response_id == response_id:
                return entry
        return None

    def record(
        self, partition: int, conversation_id: str, entry: SentEntry, encoded: bytes | None = None
    ) -> bytes:
        """Remember ``entry`` (replacing the response's earlier one); returns the changelog
        value to write for the conversation. ``encoded`` is :func:`encode_entry` of
        ``entry`` when the caller has it already."""
        conversations = self._partitions.setdefault(partition, {})
        entries = conversations.setdefault(conversation_id, [])
        if entries and entries[-1][0].response_id == entry.response_id:
            entries.pop()
        else:
            entries[:] = [e for e in entries if e[0].response_id != entry.response_id]
        entries.append((entry, encoded or encode_entry(entry)))
        del entries[: -self.keep]
        return _join([encoded for _, encoded in entries])

    def value_with(
        self, partition: int, conversation_id: str, entry: SentEntry, encoded: bytes | None = None
    ) -> bytes:
        """The changelog value :meth:`record` would return, without remembering ``entry``
        (until its write was acknowledged)."""
        entries = self._partitions.get(partition, {}).get(conversation_id, [])
        kept = [e for e in entries if e[0].response_id != entry.response_id]
        kept.append((entry, encoded or encode_entry(entry)))
        return _join([encoded for _, encoded in kept[-self.keep :]])

    def load(self, partition: int, values: dict[str, bytes]) -> None:
        """Replace a partition's entries with the changelog's latest values."""
        self._partitions[partition] = {
            conversation: [(e, encode_entry(e)) for e in decode_value(value)[-self.keep :]]
            for conversation, value in values.items()
        }

    def drop(self, partitions: Iterable[int]) -> None:
        for partition in partitions:
            self._partitions.pop(partition, None)


def encode_value(entries: list[SentEntry]) -> bytes:
    """A conversation's changelog value: ``{"v":1,"sent":[entry, ...]}``, compact JSON."""
    return _join([encode_entry(e) for e in entries])


def encode_entry(entry: SentEntry) -> bytes:
    """One entry of a changelog value, compact JSON (``error`` only when there is one)."""
    fields: dict[str, Any] = {
        "response_id": entry.response_id,
        "channel": entry.channel,
        "attempt": entry.attempt,
        "provider_message_id": entry.provider_message_id,
        "sent_at_ms": entry.sent_at_ms,
        "state": entry.state,
    }
    if entry.error is not None:
        fields["error"] = entry.error
    return json.dumps(fields, separators=(",", ":")).encode()


def _join(encoded: list[bytes]) -> bytes:
    # The same bytes as json.dumps({"v": ..., "sent": [...]}, separators=(",", ":")).
    return b'{"v":%d,"sent":[%b]}' % (FORMAT_VERSION, b",".join(encoded))


def decode_value(value: bytes) -> list[SentEntry]:
    document: dict[str, Any] = json.loads(value)
    known = set(SentEntry.__dataclass_fields__)
    return [
        SentEntry(**{k: v for k, v in entry.items() if k in known})
        for entry in document.get("sent", [])
    ]


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
