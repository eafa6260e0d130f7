"""The scheduler's timer index: schedule, cancel, fire, repeats, ownership and records."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from pipeline.events.model import Event, Metadata
from pipeline.services.scheduler.timers import (
    HEADER_APPLIED,
    HEADER_PARTITION,
    Ended,
    Timer,
    TimerIndex,
    fired_event_id,
    to_millis,
)

NOW = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)


def request(
    timer_id: str,
    action: str = "schedule",
    due_in: float | None = 2.0,
    conversation: str = "c1",
    **extra: object,
) -> Event:
    metadata = Metadata.new("timer_requested", conversation, tenant_id="t1", producer="agent")
    due = NOW + timedelta(seconds=due_in) if due_in is not None and action == "schedule" else None
    data = {"timer_id": timer_id, "action": action, "due_at": due, "purpose": "follow_up"}
    return Event(metadata, {**data, "payload_json": '{"text": "still there?"}', **extra})


def ms(seconds: float) -> int:
    return to_millis(NOW + timedelta(seconds=seconds))


def owning(*partitions: int) -> TimerIndex:
    index = TimerIndex()
    index.assign(partitions, [])
    return index


def test_schedule_then_fire_in_due_order() -> None:
    index = owning(0, 1)
    late = index.schedule(request("late", due_in=5), 1)
    early = index.schedule(request("early", due_in=1), 0)
    assert early is not None and late is not None and early.timer is not None
    assert early.value is not None and Timer.decode(early.value) == early.timer
    assert index.due(ms(0.5)) == []
    assert [t.timer_id for t in index.due(ms(10))] == ["early", "late"]
    assert index.due(ms(10)) == []  # taken off the queue


def test_reschedule_replaces_and_the_old_version_never_fires() -> None:
    index = owning(0)
    index.schedule(request("t", due_in=1), 0)
    change = index.schedule(request("t", due_in=3), 0)
    assert change is not None and change.timer is not None
    assert len(change.timer.applied) == 2
    assert index.due(ms(2)) == []
    assert [t.due_at_ms for t in index.due(ms(3))] == [ms(3)]


def test_cancel_writes_a_tombstone_only_for_a_pending_timer() -> None:
    index = owning(0)
    scheduled = request("t")
    index.schedule(scheduled, 0)
    change = index.cancel(request("t", "cancel"), 0)
    assert change is not None and change.value is None
    headers = dict(change.headers)
    assert headers[HEADER_PARTITION] == b"0"
    assert str(scheduled.id).encode() in headers[HEADER_APPLIED]
    assert index.due(ms(10)) == []
    assert index.cancel(request("never-scheduled", "cancel"), 0) is None


def test_repeated_requests_are_recognised() -> None:
    index = owning(0)
    first = request("t")
    index.schedule(first, 0)
    assert index.schedule(first, 0) is None  # the same request handled again
    (timer,) = index.due(ms(5))
    ended = index.complete(timer)
    assert ended is not None and ended.reason == "fired"
    # Handled again after a crash, before its offset was committed: not scheduled again.
    assert index.schedule(first, 0) is None
    assert index.due(ms(60)) == []
    # A new request for the same id is a new timer.
    assert index.schedule(request("t"), 0) is not None


def test_a_repeat_is_recognised_after_a_restore_from_tombstone_headers() -> None:
    first = request("t")
    index = owning(0)
    index.schedule(first, 0)
    (timer,) = index.due(ms(5))
    ended = index.complete(timer)
    assert ended is not None
    restored = Ended.from_headers("t", list(ended.headers()))
    assert restored is not None and restored.applied == (str(first.id),)
    fresh = TimerIndex()
    fresh.assign([0], [restored])
    assert fresh.schedule(first, 0) is None


def test_complete_skips_a_timer_changed_while_firing() -> None:
    index = owning(0)
    index.schedule(request("t", due_in=1), 0)
    (firing,) = index.due(ms(1))
    index.schedule(request("t", due_in=30), 0)  # rescheduled meanwhile
    assert index.complete(firing) is None
    assert len(index) == 1
    index.cancel(request("t", "cancel"), 0)
    assert index.complete(firing) is None


def test_failed_firing_is_retried() -> None:
    index = owning(0)
    index.schedule(request("t"), 0)
    (timer,) = index.due(ms(5))
    index.retry(timer)
    assert index.due(ms(5)) == [timer]


def test_ownership_follows_the_assigned_request_partitions() -> None:
    index = owning(0, 1)
    index.schedule(request("a"), 0)
    index.schedule(request("b"), 1)
    index.revoke([1])
    assert set(index.timers) == {"a"}
    assert [t.timer_id for t in index.due(ms(5))] == ["a"]

    other = TimerIndex()
    restored: list[Timer | Ended] = []
    for tid, partition in [("x", 1), ("y", 2)]:
        scheduling = TimerIndex()
        change = scheduling.schedule(request(tid), partition)
        assert change is not None and change.timer is not None
        restored.append(change.timer)
    restored.append(Ended("gone", 1, ("r1",), "cancelled"))
    assert other.assign([1], restored) == 1
    assert set(other.timers) == {"x"} and set(other.ended) == {"gone"}
    assert [t.timer_id for t in other.due(ms(5))] == ["x"]


def test_a_timer_of_an_unowned_partition_does_not_fire() -> None:
    index = TimerIndex()
    index.schedule(request("t"), 3)
    assert index.due(ms(5)) == []


def test_fired_event_carries_the_request_chain_and_a_stable_id() -> None:
    req = request("follow_up:c1", conversation="c1")
    change = owning(0).schedule(req, 0)
    assert change is not None and change.timer is not None
    timer = change.timer
    cause = timer.cause()
    assert cause.id == req.id
    assert cause.metadata.correlation_id == req.metadata.correlation_id
    assert cause.metadata.tenant_id == "t1" and cause.conversation_id == "c1"
    data = timer.fired_data()
    assert data["due_at"] == NOW + timedelta(seconds=2)
    assert data["payload_json"] == '{"text": "still there?"}'
    assert fired_event_id("a", 1) == fired_event_id("a", 1) != fired_event_id("a", 2)


def test_schedule_without_due_time_is_refused() -> None:
    with pytest.raises(ValueError, match="needs due_at"):
        owning(0).schedule(request("t", due_in=None), 0)


def test_records_and_headers_round_trip_and_reject_garbage() -> None:
    with pytest.raises(ValueError, match="not a timer record"):
        Timer.decode(b'{"timer_id": "x"}')
    with pytest.raises(ValueError, match="not a timer record"):
        Timer.decode(b"\xff")
    assert Ended.from_headers("t", [(HEADER_APPLIED, b"a,b")]) is None
    assert Ended.from_headers("t", [(HEADER_PARTITION, b"2")]) == Ended("t", 2, (), "ended")


def test_pruning_forgets_old_ended_timers_and_the_queue_stays_small() -> None:
    index = owning(0)
    for _ in range(3000):
        index.schedule(request("t", due_in=3600), 0)
    assert len(index._heap) <= 2 * len(index) + 1025
    index.cancel(request("t", "cancel"), 0)
    index.prune(now=10**9)
    assert index.ended == {}
