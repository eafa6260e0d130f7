"""Runtime metrics. Every metric takes an injected registry; nothing registers at import.

Names follow Prometheus conventions: ``pipeline_`` prefix, base units, ``_total`` on
counters, and only bounded labels (never a conversation id).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# Handler and end-to-end latencies span milliseconds (echo) to minutes (LLM + tools).
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


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
        self.handler_duration = Histogram(
            "pipeline_handler_duration_seconds",
            "Time one handler attempt took.",
            ["service", "handler", "event_type"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.event_latency = Histogram(
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
