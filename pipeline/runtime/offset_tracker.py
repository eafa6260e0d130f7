"""Offset watermarks: commit only up to the lowest offset not yet finished in a partition.

Events of one partition finish out of order (different conversations run concurrently),
so the committable offset is the first offset that is not finished yet. Everything below
it is done, with its outputs acknowledged by the broker; a crash can repeat work, never
skip it.

Offsets above the watermark that are already finished travel in the commit's metadata
as a compressed bitmap, as Confluent's Parallel Consumer does, so the next owner of the
partition skips them instead of handling them again.

A partition whose committed offsets could not be read when it was assigned is *held*:
nothing of it is handled until they are read, because its finished offsets (and, in
exactly-once mode, the position its committed state vouches for) are not known.

When everything fetched is finished and the consumer's position is past the last record
handed over (transaction markers and aborted records are never handed over), the position
is what commits, as Kafka Streams does: a partition written in transactions then shows
lag 0 once all is read, not 1 for its last marker.
"""

from __future__ import annotations

import base64
import binascii
import zlib
from collections import deque

METADATA_PREFIX = "done1:"
# Kafka's offset.metadata.max.bytes defaults to 4096; stay well below it.
MAX_METADATA_CHARS = 3000


class PartitionOffsets:
    """Offsets of one assigned partition, for one assignment generation."""

    __slots__ = (
        "_done",
        "_pending",
        "committed",
        "durable",
        "first",
        "held",
        "held_from",
        "high_water",
        "in_progress",
        "partition",
        "revoked",
        "skip",
        "start",
        "topic",
    )

    def __init__(self, topic: str, partition: int, skip: set[int] | None = None) -> None:
        self.topic = topic
        self.partition = partition
        self.revoked = False
        self.committed: tuple[int, str | None] | None = None
        self.high_water: int | None = None
        self.first: int | None = None  # the first offset fetched in this generation
        self.in_progress = 0  # started and neither finished nor abandoned
        self.skip = skip or set()  # finished by an earlier owner, per the commit metadata
        self.held = False  # the committed offsets are not known yet: handle nothing
        self.held_from: int | None = None  # the first offset fetched (and dropped) while held
        self.start: int | None = None  # the committed offset when assigned (None: none)
        self.durable: int | None = None  # the offset the broker confirmed committed
        self._pending: deque[int] = deque()
        self._done: set[int] = set()

    def received(self, offset: int) -> bool:
        """Track a fetched offset; False for one at or below an offset already tracked."""
        if self.high_water is not None and offset < self.high_water:
            return False
        self._pending.append(offset)
        if self.first is None:
            self.first = offset
        self.high_water = offset + 1
        return True

    def confirmed(self, offset: int) -> None:
        """The broker confirmed a commit of ``offset`` (never moves back)."""
        if self.durable is None or offset > self.durable:
            self.durable = offset

    def hold_back(self, offset: int) -> None:
        """A record fetched while held: dropped, to be fetched again once released."""
        if self.held_from is None or offset < self.held_from:
            self.held_from = offset

    def advance_to(self, position: int) -> None:
        """The consumer's position, read when everything it handed over was tracked: with
        nothing pending, the offsets below it are finished or were never handed over
        (transaction markers, aborted records), so the watermark may move up to it."""
        if self._pending or self.held or self.skip or position < 0:
            return  # (offsets an earlier owner finished are still to come: not past them)
        if self.high_water is None:
            if self.start is not None and position > self.start:
                self.high_water = position  # stepped over markers right after the commit
        elif position > self.high_water:
            self.high_water = position

    def finished(self, offset: int) -> None:
        """Mark an offset finished; the watermark moves over every finished prefix."""
        self._done.add(offset)
        pending, done = self._pending, self._done
        while pending and pending[0] in done:
            done.discard(pending.popleft())

    @property
    def buffered(self) -> int:
        """Offsets fetched and not yet below the watermark."""
        return len(self._pending)

    def watermark(self) -> int | None:
        """The offset to commit (the next one to read), or None before any was fetched."""
        if self._pending:
            return self._pending[0]
        return self.high_water

    def commit_metadata(self) -> str | None:
        """The finished offsets above the watermark, encoded for the commit's metadata:
        those finished here and those an earlier owner finished that were not fetched yet
        (so a commit before they arrive does not forget them)."""
        if self.skip:
            mark = self.watermark()
            if mark is None:
                return None
            return encode_finished(mark, self._done | self.skip)
        if not self._done or not self._pending:
            return None
        return encode_finished(self._pending[0], self._done)

    def to_commit(self, *, force: bool = False) -> tuple[int, str | None] | None:
        """(offset, metadata) when it differs from what was last committed (or always,
        with ``force``); None before any offset was fetched."""
        mark = self.watermark()
        if mark is None:
            return None
        position = (mark, self.commit_metadata())
        return None if position == self.committed and not force else position


def encode_finished(watermark: int, done: set[int]) -> str | None:
    """Bitmap of ``done`` offsets relative to ``watermark``, zlib-compressed, base64."""
    above = [o - watermark for o in done if o > watermark]
    if not above:
        return None
    bits = bytearray((max(above) >> 3) + 1)
    for delta in above:
        bits[delta >> 3] |= 1 << (delta & 7)
    text = METADATA_PREFIX + base64.b64encode(zlib.compress(bytes(bits))).decode("ascii")
    return text if len(text) <= MAX_METADATA_CHARS else None


def decode_finished(watermark: int, metadata: str | None) -> set[int]:
    """The offsets ``encode_finished`` wrote; empty for foreign or damaged metadata."""
    if not metadata or not metadata.startswith(METADATA_PREFIX):
        return set()
    try:
        bits = zlib.decompress(base64.b64decode(metadata[len(METADATA_PREFIX) :]))
    except (binascii.Error, zlib.error, ValueError):
        return set()
    return {
        watermark + (i << 3) + b for i, byte in enumerate(bits) for b in range(8) if byte >> b & 1
    }
