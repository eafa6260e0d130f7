"""The scheduler on a real broker: timers fire on time, once, onto the conversation's
partition, survive a SIGKILL and restart, and a cancelled timer never fires."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pipeline.events.model import Event, Metadata, to_millis
from pipeline.runtime.service import Service
from pipeline.services import scheduler
from pipeline.services.scheduler.timers import HEADER_ENDED, fired_event_id
from tests.integration.runtime_support import (
    Record,
    produce_events,
    read_all,
    read_all_async,
    running,
    settings_for,
    start_service,
    stop_service,
)

TOPICS = ("timer_requested", "timer_fired", "scheduler_timers", "dead_letters")


def timer_request(
    conversation: str, action: str, timer_id: str, due_at: datetime | None = None
) -> Event:
    metadata = Metadata.new("timer_requested", conversation, tenant_id="t1", producer="agent")
    data = {
        "timer_id": timer_id,
        "action": action,
        "due_at": due_at,
        "purpose": "follow_up",
        "payload_json": '{"text": "Anything else?"}' if action == "schedule" else None,
    }
    return Event(metadata, data)


def in_seconds(seconds: float) -> datetime:
    moment = datetime.now(UTC) + timedelta(seconds=seconds)
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def fired_of(records: list[Record], timer_id: str) -> list[Record]:
    return [r for r in records if r.event()["timer_id"] == timer_id]


async def test_timer_fires_on_time_on_its_partition_and_a_cancelled_one_never(
    kafka_bootstrap: str, topic_prefix: str, make_topics: Callable[..., list[str]]
) -> None:
    requests, fired, timers, _ = make_topics(*TOPICS, partitions=3)
    service = scheduler.build(settings_for(kafka_bootstrap, topic_prefix))
    async with running(service):
        follow_up = timer_request("conv-a", "schedule", "follow_up:conv-a", in_seconds(2))
        doomed = timer_request("conv-b", "schedule", "follow_up:conv-b", in_seconds(2.5))
        reply = timer_request("conv-b", "cancel", "follow_up:conv-b")
        produce_events(kafka_bootstrap, requests, [follow_up, doomed, reply])
        records = await read_all_async(
            kafka_bootstrap, fired, lambda r: len(fired_of(r, "follow_up:conv-a")) >= 1, 30
        )
        # Well past the cancelled timer's due time: still nothing for it.
        wait = (doomed["due_at"] - datetime.now(UTC)).total_seconds() + 1.5
        records = await read_all_async(kafka_bootstrap, fired, lambda r: False, max(wait, 0.5))

    assert fired_of(records, "follow_up:conv-b") == []
    (record,) = fired_of(records, "follow_up:conv-a")
    event = record.event()
    assert record.key == "conv-a"
    requested = read_all(kafka_bootstrap, requests, lambda r: len(r) >= 3, 30)
    (request_record,) = [r for r in requested if r.event().id == follow_up.id]
    assert record.partition == request_record.partition  # the conversation's partition
    assert event["due_at"] == follow_up["due_at"]
    assert event["purpose"] == "follow_up" and event["payload_json"] == follow_up["payload_json"]
    assert event.id == fired_event_id("follow_up:conv-a", to_millis(follow_up["due_at"]))
    assert event.metadata.causation_id == follow_up.id
    assert event.metadata.correlation_id == follow_up.metadata.correlation_id
    late = (event.metadata.occurred_at - follow_up["due_at"]).total_seconds()
    assert 0 <= late < 1.0, f"fired {late:.3f}s after its due time"

    stored = read_all(kafka_bootstrap, timers, lambda r: len(r) >= 4, 30)
    by_timer: dict[str, list[Record]] = {}
    for r in sorted(stored, key=lambda r: r.offset):
        by_timer.setdefault(r.key or "", []).append(r)
    # Each timer: its record, then a tombstone saying how it ended.
    for timer_id, ended in [("follow_up:conv-a", b"fired"), ("follow_up:conv-b", b"cancelled")]:
        first, last = by_timer[timer_id]
        assert first.value and not last.value
        assert dict(last.headers)[HEADER_ENDED] == ended


def start_scheduler(bootstrap: str, prefix: str, log: Path) -> subprocess.Popen[bytes]:
    """Start the scheduler service in a subprocess with a static group membership."""
    return start_service(
        "scheduler",
        bootstrap=bootstrap,
        prefix=prefix,
        log=log,
        env={
            # Static membership: a restarted instance takes its partitions back at once
            # instead of waiting for the killed one's session to time out.
            "PIPELINE_CONSUMER__GROUP_INSTANCE_ID": "scheduler-0",
            "PIPELINE_CONSUMER__SESSION_TIMEOUT_MS": "10000",
        },
    )


def wait_for_line(log: Path, text: str, timeout: float = 60.0) -> float:
    """The time ``text`` first appeared in ``log``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if log.exists() and text in log.read_text(errors="replace"):
            return time.time()
        time.sleep(0.02)
    raise AssertionError(f"{text!r} not in {log}:\n{log.read_text(errors='replace')[-3000:]}")


def test_timer_fires_once_although_the_scheduler_was_killed_and_restarted(
    kafka_bootstrap: str, topic_prefix: str, make_topics: Callable[..., list[str]], tmp_path: Path
) -> None:
    requests, fired, timers, _ = make_topics(*TOPICS, partitions=3)
    first_log, second_log = tmp_path / "first.log", tmp_path / "second.log"
    first = start_scheduler(kafka_bootstrap, topic_prefix, first_log)
    try:
        wait_for_line(first_log, "restored 0 pending timers")
        follow_up = timer_request("conv-a", "schedule", "follow_up:conv-a", in_seconds(2))
        doomed = timer_request("conv-b", "schedule", "follow_up:conv-b", in_seconds(2.5))
        reply = timer_request("conv-b", "cancel", "follow_up:conv-b")
        produce_events(kafka_bootstrap, requests, [follow_up, doomed, reply])
        stored = read_all(kafka_bootstrap, timers, lambda r: len(r) >= 3, 30)
        assert len(stored) == 3, "the timers were not stored before the kill"
    finally:
        stop_service(first, signal.SIGKILL, timeout=10)
    killed_at = time.time()
    assert (follow_up["due_at"].timestamp() - killed_at) > 0.5, "killed too late to test"

    second = start_scheduler(kafka_bootstrap, topic_prefix, second_log)
    try:
        restored_at = wait_for_line(second_log, "restored 1 pending timers")
        records = read_all(
            kafka_bootstrap, fired, lambda r: len(fired_of(r, "follow_up:conv-a")) >= 1, 30
        )
        wait = doomed["due_at"].timestamp() - time.time() + 2.0
        records = read_all(kafka_bootstrap, fired, lambda r: False, max(wait, 2.0))
    finally:
        assert stop_service(second) == 0, second_log.read_text()[-3000:]

    assert fired_of(records, "follow_up:conv-b") == [], "a cancelled timer fired"
    assert len(fired_of(records, "follow_up:conv-a")) == 1, "the timer fired more than once"
    event = fired_of(records, "follow_up:conv-a")[0].event()
    assert event.metadata.causation_id == follow_up.id
    due = follow_up["due_at"].timestamp()
    fired_at = event.metadata.occurred_at.timestamp()
    allowed_from = max(due, restored_at)
    print(
        f"\nkilled {due - killed_at:.2f}s before due; restart restored its timers "
        f"{restored_at - killed_at:.2f}s after the kill; fired {fired_at - due:+.3f}s "
        "relative to its due time"
    )
    assert fired_at >= due - 0.001
    assert fired_at - allowed_from < 1.0, f"fired {fired_at - allowed_from:.2f}s late"


async def test_timers_move_with_their_partitions_and_fire_once(
    kafka_bootstrap: str, topic_prefix: str, make_topics: Callable[..., list[str]]
) -> None:
    """A second instance joins: the timers of the partitions it takes over fire there,
    the others stay with the first one, and none fires twice or not at all."""
    requests, fired, timers, _ = make_topics(*TOPICS, partitions=4)
    settings = settings_for(kafka_bootstrap, topic_prefix)
    first, second = scheduler.build(settings), scheduler.build(settings)
    wanted = {f"follow_up:conv-{i}" for i in range(12)}
    async with running(first):
        produce_events(
            kafka_bootstrap,
            requests,
            [timer_request(t.split(":")[1], "schedule", t, in_seconds(8)) for t in sorted(wanted)],
        )
        await read_all_async(kafka_bootstrap, timers, lambda r: len(r) >= len(wanted), 30)
        async with running(second):

            def all_fired(records: list[Record]) -> bool:
                return {r.event()["timer_id"] for r in records} >= wanted

            await read_all_async(kafka_bootstrap, fired, all_fired, 40)
            records = await read_all_async(kafka_bootstrap, fired, lambda r: False, 1.5)

    fired_ids = sorted(r.event()["timer_id"] for r in records)
    assert fired_ids == sorted(wanted), "a timer fired twice or not at all"

    def count(service: Service) -> float:
        value = service.registry.get_sample_value(
            "pipeline_timers_fired_total", {"service": "scheduler"}
        )
        return value or 0.0

    print(f"\nfirst instance fired {count(first):.0f}, second {count(second):.0f}")
    assert count(first) + count(second) == len(wanted)
    assert count(second) > 0, "the second instance took over no partition with timers"
