"""Timers, how they are stored in the compacted ``scheduler_timers`` topic, and the index.

A pending timer is a JSON record keyed by timer id. A timer that fired or was cancelled
is a tombstone with headers: the partition of ``timer_requested`` it came from and the
ids of the requests already applied to it. Those ids make a request handled again after
a crash (its offset was not committed yet) recognisable, so a fired or cancelled timer
is not scheduled again by the repeat.

The index is single-threaded (the service's event loop): requests change it at once and
return the record to write; the firing task takes due timers and completes them.
"""

from __future__ import annotations

import heapq
import itertools
import json
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

from pipeline.events.model import Event, Metadata, from_millis, to_millis

MAX_APPLIED = 8  # request ids remembered per timer id
DONE_TTL_SECONDS = 600.0  # how long ended timers are remembered in memory

HEADER_PARTITION = "pipeline-timer-source-partition"
HEADER_APPLIED = "pipeline-timer-applied"
HEADER_ENDED = "pipeline-timer-ended"

_FIRED_NAMESPACE = uuid.UUID("6f1d3c52-6a1e-4a53-9a57-1d2f1f6c7b10")


def fired_event_id(timer_id: str, due_at_ms: int) -> uuid.UUID:
    """The timer_fired event id: the same for every repeat of one timer's firing."""
    return uuid.uuid5(_FIRED_NAMESPACE, f"{timer_id}@{due_at_ms}")


@dataclass(frozen=True, slots=True)
class Timer:
    """A pending timer, as stored in the timers topic."""

    timer_id: str
    due_at_ms: int
    purpose: str
    payload_json: str | None
    conversation_id: str
    tenant_id: str
    source_partition: int
    request_id: str
    correlation_id: str
    applied: tuple[str, ...]

    def encode(self) -> bytes:
        record = {
            "v": 1,
            "timer_id": self.timer_id,
            "due_at_ms": self.due_at_ms,
            "purpose": self.purpose,
            "payload_json": self.payload_json,
            "conversation_id": self.conversation_id,
            "tenant_id": self.tenant_id,
            "source_partition": self.source_partition,
            "request_id": self.request_id,
            "correlation_id": self.correlation_id,
            "applied": list(self.applied),
        }
        return json.dumps(record, separators=(",", ":")).encode()

    @classmethod
    def decode(cls, value: bytes) -> Timer:
        """The timer in a record's value; ValueError when it is not one."""
        try:
            record: dict[str, Any] = json.loads(value)
            return cls(
                timer_id=str(record["timer_id"]),
                due_at_ms=int(record["due_at_ms"]),
                purpose=str(record.get("purpose", "")),
                payload_json=record.get("payload_json"),
                conversation_id=str(record["conversation_id"]),
                tenant_id=str(record["tenant_id"]),
                source_partition=int(record["source_partition"]),
                request_id=str(record["request_id"]),
                correlation_id=str(record["correlation_id"]),
                applied=tuple(str(i) for i in record.get("applied", ())),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"not a timer record: {exc!r}") from exc

    def cause(self) -> Event:
        """The request that scheduled the timer, enough to chain timer_fired to it."""
        request = uuid.UUID(self.request_id)
        metadata = Metadata(
            event_id=request,
            event_type="timer_requested",
            conversation_id=self.conversation_id,
            tenant_id=self.tenant_id,
            correlation_id=uuid.UUID(self.correlation_id),
            causation_id=None,
            occurred_at=from_millis(self.due_at_ms),
            producer="scheduler",
        )
        return Event(metadata, {})

    def fired_data(self) -> dict[str, Any]:
        return {
            "timer_id": self.timer_id,
            "purpose": self.purpose,
            "due_at": from_millis(self.due_at_ms),
            "payload_json": self.payload_json,
        }


@dataclass(frozen=True, slots=True)
class Ended:
    """A timer that fired or was cancelled, remembered for recognising repeats."""

    timer_id: str
    source_partition: int
    applied: tuple[str, ...]
    reason: str
    since: float = 0.0  # time.monotonic() when it ended in this process

    def headers(self) -> tuple[tuple[str, bytes], ...]:
        return (
            (HEADER_PARTITION, str(self.source_partition).encode()),
            (HEADER_APPLIED, ",".join(self.applied).encode()),
            (HEADER_ENDED, self.reason.encode()),
        )

    @classmethod
    def from_headers(cls, timer_id: str, headers: Iterable[tuple[str, Any]]) -> Ended | None:
        """The ended timer a tombstone describes; None without a source partition."""
        found = {k: (v.decode() if isinstance(v, bytes) else str(v or "")) for k, v in headers}
        try:
            partition = int(found[HEADER_PARTITION])
        except (KeyError, ValueError):
            return None
        applied = tuple(i for i in found.get(HEADER_APPLIED, "").split(",") if i)
        return cls(timer_id, partition, applied, found.get(HEADER_ENDED, "ended"))


@dataclass(frozen=True, slots=True)
class Change:
    """What a request asks to write to the timers topic: a timer, or a tombstone."""

    timer_id: str
    timer: Timer | None = None
    ended: Ended | None = None

    @property
    def value(self) -> bytes | None:
        return self.timer.encode() if self.timer is not None else None

    @property
    def headers(self) -> tuple[tuple[str, bytes], ...]:
        return self.ended.headers() if self.ended is not None else ()


class TimerIndex:
    """The pending timers of the partitions an instance owns, by timer id and due time."""

    def __init__(self) -> None:
        self.owned: set[int] = set()
        self.timers: dict[str, Timer] = {}
        self.ended: dict[str, Ended] = {}
        self._heap: list[tuple[int, int, Timer]] = []
        self._seq = itertools.count()

    def __len__(self) -> int:
        return len(self.timers)

    # ------------------------------------------------------------- requests

    def schedule(self, request: Event, source_partition: int) -> Change | None:
        """Apply a schedule request; None for a repeat of one already applied."""
        timer_id = str(request["timer_id"])
        due_at = request["due_at"]
        if due_at is None:
            raise ValueError(f"timer {timer_id!r}: a schedule request needs due_at")
        applied = self._applied(timer_id)
        request_id = str(request.id)
        if request_id in applied:
            return None
        timer = Timer(
            timer_id=timer_id,
            due_at_ms=to_millis(due_at),
            purpose=str(request.get("purpose") or ""),
            payload_json=request.get("payload_json"),
            conversation_id=request.conversation_id,
            tenant_id=request.metadata.tenant_id,
            source_partition=source_partition,
            request_id=request_id,
            correlation_id=str(request.metadata.correlation_id),
            applied=(*applied, request_id)[-MAX_APPLIED:],
        )
        self.put(timer)
        return Change(timer_id, timer=timer)

    def cancel(self, request: Event, source_partition: int) -> Change | None:
        """Apply a cancel request; a tombstone only when a pending timer goes away."""
        timer_id = str(request["timer_id"])
        applied = self._applied(timer_id)
        request_id = str(request.id)
        if request_id in applied:
            return None
        ended = Ended(
            timer_id,
            source_partition,
            (*applied, request_id)[-MAX_APPLIED:],
            "cancelled",
            time.monotonic(),
        )
        pending = self.timers.pop(timer_id, None)
        self.ended[timer_id] = ended
        return Change(timer_id, ended=ended) if pending is not None else None

    def _applied(self, timer_id: str) -> tuple[str, ...]:
        pending = self.timers.get(timer_id)
        if pending is not None:
            return pending.applied
        ended = self.ended.get(timer_id)
        return ended.applied if ended is not None else ()

    # ------------------------------------------------------------- firing

    def put(self, timer: Timer) -> None:
        self.timers[timer.timer_id] = timer
        self.ended.pop(timer.timer_id, None)
        heapq.heappush(self._heap, (timer.due_at_ms, next(self._seq), timer))
        if len(self._heap) > 2 * len(self.timers) + 1024:
            # Replaced and cancelled timers stay queued until due: drop them now and then.
            self._heap = [e for e in self._heap if self.timers.get(e[2].timer_id) is e[2]]
            heapq.heapify(self._heap)

    def due(self, now_ms: int) -> list[Timer]:
        """Pending, owned timers due at ``now_ms``, in due order (taken off the queue)."""
        found = []
        while self._heap and self._heap[0][0] <= now_ms:
            _, _, timer = heapq.heappop(self._heap)
            if self.timers.get(timer.timer_id) is timer and timer.source_partition in self.owned:
                found.append(timer)
        return found

    def next_due_ms(self) -> int | None:
        return self._heap[0][0] if self._heap else None

    def retry(self, timer: Timer) -> None:
        """Queue a timer again whose firing failed."""
        if self.timers.get(timer.timer_id) is timer:
            heapq.heappush(self._heap, (timer.due_at_ms, next(self._seq), timer))

    def complete(self, timer: Timer) -> Ended | None:
        """Forget a fired timer; the tombstone to write, or None if it changed meanwhile
        (rescheduled or cancelled while firing: that request wrote its own record)."""
        if self.timers.get(timer.timer_id) is not timer:
            return None
        del self.timers[timer.timer_id]
        ended = Ended(
            timer.timer_id, timer.source_partition, timer.applied, "fired", time.monotonic()
        )
        self.ended[timer.timer_id] = ended
        return ended

    # ------------------------------------------------------------- ownership

    def assign(self, partitions: Iterable[int], restored: Iterable[Timer | Ended]) -> int:
        """Own ``partitions`` and load their restored timers; returns the pending count."""
        wanted = set(partitions)
        self.owned |= wanted
        count = 0
        for item in restored:
            if item.source_partition not in wanted:
                continue
            if isinstance(item, Timer):
                self.put(item)
                count += 1
            else:
                self.timers.pop(item.timer_id, None)
                self.ended[item.timer_id] = replace(item, since=time.monotonic())
        return count

    def revoke(self, partitions: Iterable[int]) -> None:
        """Stop owning ``partitions``: forget their timers (the next owner restores them)."""
        gone = set(partitions)
        self.owned -= gone
        self.timers = {k: t for k, t in self.timers.items() if t.source_partition not in gone}
        self.ended = {k: e for k, e in self.ended.items() if e.source_partition not in gone}
        self._heap = [entry for entry in self._heap if entry[2].source_partition not in gone]
        heapq.heapify(self._heap)

    def prune(self, now: float | None = None, ttl: float = DONE_TTL_SECONDS) -> None:
        """Forget ended timers older than ``ttl``: repeats come right after a restart."""
        limit = (time.monotonic() if now is None else now) - ttl
        self.ended = {k: e for k, e in self.ended.items() if e.since >= limit}
