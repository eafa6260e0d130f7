"""Offset watermarks: commit only up to the lowest offset not yet finished in a partition.

Events of one partition finish out of order (different conversations run concurrently),
so the committable offset is the first offset that is not finished yet. Everything below
it is done, with its outputs acknowledged by the broker; a crash can repeat work, never
skip it.
"""

from __future__ import annotations

from collections import deque


class PartitionOffsets:
    """Offsets of one assigned partition, for one assignment generation."""

    __slots__ = (
        "_done",
        "_pending",
        "committed",
        "high_water",
        "in_progress",
        "partition",
        "revoked",
        "topic",
    )

    def __init__(self, topic: str, partition: int) -> None:
        self.topic = topic
        self.partition = partition
        self.revoked = False
        self.committed: int | None = None
        self.high_water: int | None = None
        self.in_progress = 0  # started and neither finished nor abandoned
        self._pending: deque[int] = deque()
        self._done: set[int] = set()

    def received(self, offset: int) -> bool:
        """Track a fetched offset; False for one at or below an offset already tracked."""
        if self.high_water is not None and offset < self.high_water:
            return False
        self._pending.append(offset)
        self.high_water = offset + 1
        return True

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
