"""Delivery metrics, registered on the service's registry (never globally)."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram

from pipeline.observability.metrics import LATENCY_BUCKETS


class DeliveryMetrics:
    """Send outcomes, send durations and end-to-end turn latency, by channel."""

    def __init__(self, registry: CollectorRegistry, service: str) -> None:
        self.service = service
        self.deliveries = Counter(
            "pipeline_deliveries_total",
            "Delivery attempt outcomes by channel and state (sent, retrying, failed, "
            "duplicate: already sent, not sent again).",
            ["service", "channel", "state"],
            registry=registry,
        )
        self.duration = Histogram(
            "pipeline_delivery_duration_seconds",
            "Time one send attempt to a channel API took.",
            ["service", "channel"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.turn_latency = Histogram(
            "pipeline_turn_latency_seconds",
            "Time from a turn's ingress into the pipeline until its response was sent.",
            ["service", "channel"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )

        # Labelled children, looked up once each: a lookup takes the metric's lock, and
        # a response would otherwise do several.
        self._children: dict[tuple[str, ...], Any] = {}

    def _child(self, kind: str, metric: Counter | Histogram, *labels: str) -> Any:
        child = self._children.get((kind, *labels))
        if child is None:
            child = self._children[(kind, *labels)] = metric.labels(self.service, *labels)
        return child

    def count(self, channel: str, state: str) -> None:
        self._child("deliveries", self.deliveries, channel, state).inc()

    def observe_send(self, channel: str, seconds: float) -> None:
        self._child("duration", self.duration, channel).observe(seconds)

    def observe_turn(self, channel: str, seconds: float) -> None:
        self._child("turn", self.turn_latency, channel).observe(seconds)
