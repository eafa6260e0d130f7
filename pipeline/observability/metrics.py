"""Runtime metrics. Every metric takes an injected registry; nothing registers at import.

Names follow Prometheus conventions: ``pipeline_`` prefix, base units, ``_total`` on
counters, and only bounded labels (never a conversation id).
"""

from __future__ import annotations

import threading
from bisect import bisect_left
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import HistogramMetricFamily
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

# Handler and end-to-end latencies span milliseconds (echo) to minutes (LLM + tools).
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


class LoopHistogram(Collector):
    """A labelled histogram observed from one thread only: the service's event loop.

    prometheus-client's Histogram takes two locks per observation and finds the bucket in
    a Python loop, a visible share of the work for a handler that takes microseconds.
    Here an observation is a bisect and two additions. Scrapes, from any thread, read a
    copy of the counts.
    """

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str],
        *,
        buckets: Sequence[float],
        registry: CollectorRegistry,
    ) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = tuple(labelnames)
        self.bounds = tuple(float(b) for b in buckets)
        self._le = [floatToGoString(b) for b in self.bounds] + ["+Inf"]  # type: ignore[no-untyped-call]
        self._children: dict[tuple[str, ...], LoopHistogramChild] = {}
        self._lock = threading.Lock()  # guards the children dict, not the counts
        registry.register(self)

    def labels(self, *values: str) -> LoopHistogramChild:
        if len(values) != len(self.labelnames):
            raise ValueError(f"{self.name} takes labels {self.labelnames}, got {values}")
        key = tuple(str(v) for v in values)
        with self._lock:
            child = self._children.get(key)
            if child is None:
                child = self._children[key] = LoopHistogramChild(self.bounds)
        return child

    def describe(self) -> Iterable[HistogramMetricFamily]:
        return [HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)]

    def collect(self) -> Iterable[HistogramMetricFamily]:
        family = HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)
        with self._lock:
            children = list(self._children.items())
        for values, child in children:
            counts, total = child.counts.copy(), child.sum
            cumulative, running = [], 0
            for le, count in zip(self._le, counts, strict=True):
                running += count
                cumulative.append((le, float(running)))
            family.add_metric(list(values), cumulative, total)
        return [family]


class LoopHistogramChild:
    """One label set of a LoopHistogram."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last one is +Inf
        self.sum = 0.0

    def observe(self, value: float) -> None:
        # Prometheus buckets are upper-inclusive (le): the first bound >= value.
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value


def produced_counter(registry: CollectorRegistry) -> Counter:
    """``pipeline_events_produced_total``: every service that produces exports this one."""
    return Counter(
        "pipeline_events_produced_total",
        "Records acknowledged by the broker, by destination topic and event type.",
        ["service", "topic", "event_type"],
        registry=registry,
    )


@dataclass(frozen=True, slots=True)
class HandlerMetrics:
    """One handler's metric children, bound once so the hot path skips label lookups."""

    consumed: Any
    succeeded: Any
    errors: Any
    duration: Any
    latency: Any


class RuntimeMetrics:
    """The metrics every service exports, bound to one service name."""

    def __init__(self, registry: CollectorRegistry, service: str) -> None:
        self.registry = registry
        self.service = service
        self.consumed = Counter(
            "pipeline_events_consumed_total",
            "Records fetched from Kafka, by source topic and event type.",
            ["service", "topic", "event_type"],
            registry=registry,
        )
        self.produced = produced_counter(registry)
        self.skipped = Counter(
            "pipeline_events_skipped_total",
            "Records skipped because an earlier owner of the partition finished them.",
            ["service", "topic"],
            registry=registry,
        )
        self.handled = Counter(
            "pipeline_events_handled_total",
            "Events whose handling ended, by outcome (success or dead_lettered).",
            ["service", "handler", "event_type", "outcome"],
            registry=registry,
        )
        self.handler_errors = Counter(
            "pipeline_handler_errors_total",
            "Handler attempts that raised (each retry counts).",
            ["service", "handler", "event_type"],
            registry=registry,
        )
        self.dead_letters = Counter(
            "pipeline_dead_letters_total",
            "Records sent to the dead-letter topic, by the stage that failed.",
            ["service", "handler", "event_type", "stage"],
            registry=registry,
        )
        self.handler_duration = LoopHistogram(
            "pipeline_handler_duration_seconds",
            "Time one handler attempt took.",
            ["service", "handler", "event_type"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.event_latency = LoopHistogram(
            "pipeline_event_latency_seconds",
            "Time from an event's occurred_at until this service finished handling it.",
            ["service", "event_type"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.in_flight = Gauge(
            "pipeline_events_in_flight",
            "Handler executions running now.",
            ["service"],
            registry=registry,
        ).labels(service)
        self.kafka_call_blocked = Gauge(
            "pipeline_kafka_call_blocked_seconds",
            "How long the Kafka call running now on a client thread (consumer, "
            "transactions) has been inside the client; 0 when none runs.",
            ["service", "thread"],
            registry=registry,
        )
        self.poll_stalled = Gauge(
            "pipeline_poll_loop_stalled_seconds",
            "Seconds since the poll loop last fetched, while it should be fetching (0 during "
            "a rebalance callback or while not consuming).",
            ["service"],
            registry=registry,
        ).labels(service)
        self.held_partitions = Gauge(
            "pipeline_partitions_held",
            "Assigned partitions held back (nothing handled) because their committed "
            "offsets could not be read yet.",
            ["service"],
            registry=registry,
        ).labels(service)
        self.consumer_lag = Gauge(
            "pipeline_consumer_lag",
            "Records in a partition not yet committed by this service (high watermark - commit).",
            ["service", "topic", "partition"],
            registry=registry,
        )
        self.paused_partitions = Gauge(
            "pipeline_partitions_paused",
            "Partitions paused for backpressure.",
            ["service"],
            registry=registry,
        ).labels(service)
        self.commits = Counter(
            "pipeline_offset_commits_total",
            "Offset commits, by outcome (success or failure).",
            ["service", "outcome"],
            registry=registry,
        )
        self.rebalances = Counter(
            "pipeline_rebalances_total",
            "Partitions assigned, revoked or lost in rebalances.",
            ["service", "kind"],
            registry=registry,
        )

    def for_handler(self, topic: str, handler: str, event_type: str) -> HandlerMetrics:
        return HandlerMetrics(
            consumed=self.consumed.labels(self.service, topic, event_type),
            succeeded=self.handled.labels(self.service, handler, event_type, "success"),
            errors=self.handler_errors.labels(self.service, handler, event_type),
            duration=self.handler_duration.labels(self.service, handler, event_type),
            latency=self.event_latency.labels(self.service, event_type),
        )
