"""Gateway metrics, on an injected registry (nothing registers at import).

``pipeline_events_produced_total`` has the runtime's name and labels, so the dashboard's
produced-rate panel shows the gateway beside the other services.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from pipeline.observability.metrics import produced_counter

REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
# From a user's message to the first words of the answer on the page: a model's first
# token takes a fraction of a second to seconds.
FIRST_DELTA_BUCKETS = (0.1, 0.25, 0.5, 0.75, 1, 1.5, 2, 3, 5, 7.5, 10, 20, 60)


class GatewayMetrics:
    """Requests by route template and status; events produced, deduplicated, refused."""

    def __init__(self, registry: CollectorRegistry, service: str) -> None:
        self.registry = registry
        self.service = service
        self.requests = Counter(
            "pipeline_gateway_requests_total",
            "HTTP requests answered, by route template and status code.",
            ["route", "status"],
            registry=registry,
        )
        self.request_duration = Histogram(
            "pipeline_gateway_request_duration_seconds",
            "Time from receiving a request to the start of its answer, by route template.",
            ["route"],
            buckets=REQUEST_BUCKETS,
            registry=registry,
        )
        self.produced = produced_counter(registry)
        self.duplicates = Counter(
            "pipeline_gateway_duplicates_total",
            "Provider retries recognised and answered without producing again, by channel.",
            ["channel"],
            registry=registry,
        )
        self.rejected = Counter(
            "pipeline_gateway_rejected_total",
            "Requests refused before producing, by channel and status code.",
            ["channel", "status"],
            registry=registry,
        )
        self.broker_unavailable = Counter(
            "pipeline_gateway_broker_unavailable_total",
            "Requests answered 503 because Kafka did not acknowledge in time, by channel.",
            ["channel"],
            registry=registry,
        )
        self.streams_open = Gauge(
            "pipeline_gateway_streams_open",
            "Web streams (server-sent events) open on this replica.",
            registry=registry,
        )
        self.streamed = Counter(
            "pipeline_gateway_streamed_messages_total",
            "Web messages written to open streams, by how they came: live or catch_up.",
            ["source"],
            registry=registry,
        )
        for source in ("live", "catch_up"):  # exported at zero from the start
            self.streamed.labels(source)
        self.streamed_deltas = Counter(
            "pipeline_gateway_streamed_deltas_total",
            "Deltas of answers being written pushed to open streams, by how they came: live "
            "or catch_up.",
            ["source"],
            registry=registry,
        )
        for source in ("live", "catch_up"):
            self.streamed_deltas.labels(source)
        self.first_delta = Histogram(
            "pipeline_gateway_first_delta_seconds",
            "From a turn's ingress (the user's message accepted) to the first delta of its "
            "answer pushed to a browser's stream: the time to the first words on the page.",
            buckets=FIRST_DELTA_BUCKETS,
            registry=registry,
        )
