"""The scheduler service: durable, cancellable timers fired onto the conversation.

timer_requested (schedule or cancel) changes the in-memory index at once and writes the
timer, or a tombstone, to the compacted ``scheduler_timers`` topic keyed by timer id;
the request's offset commits only after that write is acknowledged. A background task
checks every ``tick_seconds`` for due timers, publishes timer_fired keyed by the
conversation id (so it lands on the conversation's partition) chained to the request,
waits for the acknowledgement and only then writes the tombstone. A crash between the
two fires the timer again after restart with the same event id (derived from the timer
id and due time), so a repeat is recognisable; a crash before the tombstone never loses
a timer.

Ownership: ``scheduler_timers`` is keyed by timer id, not by conversation, so it is not
co-partitioned with ``timer_requested``. Every timer record carries the partition of the
``timer_requested`` record that scheduled it, and an instance owns exactly the timers of
the ``timer_requested`` partitions the group assigned it. On assignment it reads the
whole timers topic once (up to its end) and keeps the timers of the new partitions; on
revoke it waits for a firing in progress and forgets them. All requests of one
conversation arrive on one partition, so the instance that receives a cancel is the
one holding the timer, and two instances never fire the same timer.
"""

from __future__ import annotations

import asyncio
import logging
import time

from prometheus_client import Counter, Gauge, Histogram

from pipeline.config import Settings
from pipeline.errors import PipelineError, RejectEvent
from pipeline.events.model import Event, now_millis
from pipeline.runtime.context import Context
from pipeline.runtime.publisher import Publisher
from pipeline.runtime.service import Service
from pipeline.services.scheduler.restore import TIMERS_TOPIC, read_timers
from pipeline.services.scheduler.timers import Timer, TimerIndex, fired_event_id

log = logging.getLogger(__name__)

FIRE_DELAY_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600)


class SchedulerMetrics:
    def __init__(self, service: Service) -> None:
        registry, name = service.registry, service.name
        self.requests = Counter(
            "pipeline_timer_requests_total",
            "Timer requests by action and outcome (applied, repeat).",
            ["service", "action", "outcome"],
            registry=registry,
        )
        self.fired = Counter(
            "pipeline_timers_fired_total", "Timers fired.", ["service"], registry=registry
        ).labels(name)
        self.delay = Histogram(
            "pipeline_timer_fire_delay_seconds",
            "How late a timer fired after its due time.",
            ["service"],
            buckets=FIRE_DELAY_BUCKETS,
            registry=registry,
        ).labels(name)
        self.pending = Gauge(
            "pipeline_timers_pending", "Timers waiting to fire.", ["service"], registry=registry
        ).labels(name)
        self.name = name


def build(settings: Settings | None = None) -> Service:
    """The ``scheduler`` service."""
    service = Service("scheduler", settings=settings, emits=["timer_fired"])
    tick = service.settings.scheduler.tick_seconds
    restore_timeout = service.settings.scheduler.restore_timeout_seconds
    requests_topic = service.settings.topic("timer_requested")
    index = TimerIndex()
    firing = asyncio.Lock()  # held while firing; revoke waits for it
    metrics = SchedulerMetrics(service)

    @service.handler("timer_requested")
    async def on_request(event: Event, ctx: Context) -> None:
        action = str(event["action"])
        try:
            if action == "schedule":
                change = index.schedule(event, ctx.partition)
            elif action == "cancel":
                change = index.cancel(event, ctx.partition)
            else:
                raise RejectEvent(f"unknown timer action {action!r}")
        except ValueError as exc:
            raise RejectEvent(str(exc)) from exc
        if change is not None:
            metrics.requests.labels(service.name, action, "applied").inc()
            ctx.emit_record(
                TIMERS_TOPIC, change.timer_id, change.value, headers=change.headers, kind="timer"
            )
        else:
            metrics.requests.labels(service.name, action, "repeat").inc()
        metrics.pending.set(len(index))

    @service.on_assign
    async def restore(partitions: list[tuple[str, int]]) -> None:
        mine = [p for topic, p in partitions if topic == requests_topic]
        if not mine:
            return
        started = time.monotonic()
        restored = await asyncio.to_thread(read_timers, service.settings, restore_timeout)
        async with firing:
            count = index.assign(mine, restored)
        metrics.pending.set(len(index))
        log.info(
            "restored %d pending timers of partitions %s in %.2fs",
            count,
            sorted(mine),
            time.monotonic() - started,
        )

    @service.on_revoke
    async def forget(partitions: list[tuple[str, int]]) -> None:
        mine = [p for topic, p in partitions if topic == requests_topic]
        async with firing:
            index.revoke(mine)
        metrics.pending.set(len(index))

    @service.background
    async def fire_due_timers(publisher: Publisher) -> None:
        while True:
            await asyncio.sleep(tick)
            async with firing:
                due = index.due(now_millis())
                if due:
                    await asyncio.gather(*(fire(publisher, t) for t in due))
                index.prune()
            metrics.pending.set(len(index))

    async def fire(publisher: Publisher, timer: Timer) -> None:
        try:
            await publisher.publish(
                "timer_fired",
                timer.fired_data(),
                conversation_id=timer.conversation_id,
                tenant_id=timer.tenant_id,
                cause=timer.cause(),
                event_id=fired_event_id(timer.timer_id, timer.due_at_ms),
            )
            metrics.fired.inc()
            metrics.delay.observe(max(0.0, time.time() - timer.due_at_ms / 1000))
            ended = index.complete(timer)
            if ended is not None:
                await publisher.publish_record(
                    TIMERS_TOPIC, timer.timer_id, None, headers=ended.headers()
                )
        except PipelineError as exc:
            # The timer stays pending (in memory and in the topic): try again next tick.
            log.warning("firing timer %s failed, retrying: %s", timer.timer_id, exc)
            index.retry(timer)

    return service
