"""Runtime metrics: Prometheus naming, bounded labels, and an injected registry."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, Gauge, Histogram, generate_latest
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.metrics_core import Metric

from pipeline.observability.metrics import LATENCY_BUCKETS, LoopHistogram, RuntimeMetrics

FORBIDDEN_LABELS = {"conversation", "conversation_id", "event_id", "tenant_id", "key"}


def families(registry: CollectorRegistry) -> list[Metric]:
    return [f for f in registry.collect() if f.name.startswith("pipeline_")]


def metric_objects(metrics: RuntimeMetrics) -> list[MetricWrapperBase | LoopHistogram]:
    kinds = (MetricWrapperBase, LoopHistogram)
    return [v for v in vars(metrics).values() if isinstance(v, kinds)]


def touch(metrics: RuntimeMetrics) -> None:
    """Give every labelled metric a child so that its samples show in the registry."""
    for metric in metric_objects(metrics):
        if isinstance(metric, LoopHistogram):
            values = [metrics.service if n == "service" else "x" for n in metric.labelnames]
            metric.labels(*values).observe(0.02)
            continue
        names = metric._labelnames
        if metric._labelvalues:  # already bound to the service
            child = metric
        else:
            child = metric.labels(*[metrics.service if n == "service" else "x" for n in names])
        if isinstance(child, Histogram):
            child.observe(0.02)
        elif isinstance(child, Gauge):
            child.set(1)
        else:
            child.inc()


@pytest.fixture
def registry() -> CollectorRegistry:
    registry = CollectorRegistry()
    touch(RuntimeMetrics(registry, "echo"))
    return registry


def test_only_pipeline_metrics_are_registered(registry: CollectorRegistry) -> None:
    metrics = RuntimeMetrics(CollectorRegistry(), "echo")
    assert len(metric_objects(metrics)) >= 10
    assert families(registry) == list(registry.collect())
    assert len(families(registry)) == len(metric_objects(metrics))
    assert all(family.samples for family in families(registry))


def test_every_name_has_the_pipeline_prefix(registry: CollectorRegistry) -> None:
    for family in registry.collect():
        assert family.name.startswith("pipeline_"), family.name
        for sample in family.samples:
            assert sample.name.startswith("pipeline_"), sample.name


def test_counters_end_in_total(registry: CollectorRegistry) -> None:
    counters = [f for f in families(registry) if f.type == "counter"]
    assert len(counters) >= 5
    for family in counters:
        # The client strips _total from the family name and puts it back on the samples.
        value_samples = [s for s in family.samples if not s.name.endswith("_created")]
        assert value_samples, family.name
        for sample in value_samples:
            assert sample.name == f"{family.name}_total", sample.name
    for family in families(registry):
        if family.type != "counter":
            assert not any(s.name.endswith("_total") for s in family.samples), family.name


def test_durations_are_histograms_in_seconds(registry: CollectorRegistry) -> None:
    histograms = [f for f in families(registry) if f.type == "histogram"]
    assert {f.name for f in histograms} == {
        "pipeline_handler_duration_seconds",
        "pipeline_event_latency_seconds",
    }
    for family in families(registry):
        if any(word in family.name for word in ("duration", "latency", "time")):
            assert family.name.endswith("_seconds"), family.name


def test_latency_buckets_are_ascending_seconds() -> None:
    assert list(LATENCY_BUCKETS) == sorted(LATENCY_BUCKETS)
    assert LATENCY_BUCKETS[0] < 0.01
    assert LATENCY_BUCKETS[-1] >= 60


def test_histogram_uses_the_latency_buckets(registry: CollectorRegistry) -> None:
    bounds = {
        s.labels["le"]
        for f in families(registry)
        if f.name == "pipeline_handler_duration_seconds"
        for s in f.samples
        if s.name.endswith("_bucket")
    }
    assert bounds == {str(float(b)) for b in LATENCY_BUCKETS} | {"+Inf"}


def test_labels_are_bounded(registry: CollectorRegistry) -> None:
    for family in families(registry):
        for sample in family.samples:
            assert not FORBIDDEN_LABELS & sample.labels.keys(), (family.name, sample.labels)
            assert sample.labels.get("service") == "echo", (family.name, sample.labels)


def test_values_are_readable_by_name() -> None:
    registry = CollectorRegistry()
    metrics = RuntimeMetrics(registry, "echo")
    metrics.consumed.labels("echo", "message_received", "message_received").inc(4)
    metrics.in_flight.inc(2)
    metrics.paused_partitions.set(3)
    labels = {"service": "echo", "topic": "message_received", "event_type": "message_received"}
    assert registry.get_sample_value("pipeline_events_consumed_total", labels) == 4.0
    assert registry.get_sample_value("pipeline_events_in_flight", {"service": "echo"}) == 2.0
    assert registry.get_sample_value("pipeline_partitions_paused", {"service": "echo"}) == 3.0


def test_two_instances_on_fresh_registries_do_not_collide() -> None:
    first, second = CollectorRegistry(), CollectorRegistry()
    a = RuntimeMetrics(first, "echo")
    b = RuntimeMetrics(second, "agent")
    a.commits.labels("echo", "success").inc(2)
    b.commits.labels("agent", "success").inc(5)
    assert (
        first.get_sample_value(
            "pipeline_offset_commits_total", {"service": "echo", "outcome": "success"}
        )
        == 2.0
    )
    assert (
        second.get_sample_value(
            "pipeline_offset_commits_total", {"service": "echo", "outcome": "success"}
        )
        is None
    )
    assert (
        second.get_sample_value(
            "pipeline_offset_commits_total", {"service": "agent", "outcome": "success"}
        )
        == 5.0
    )


def test_the_same_registry_cannot_hold_two(registry: CollectorRegistry) -> None:
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        RuntimeMetrics(registry, "echo")


def test_loop_histogram_exports_what_the_client_histogram_does() -> None:
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    fast = LoopHistogram("t_seconds", "doc", ["service"], buckets=LATENCY_BUCKETS, registry=ours)
    reference = Histogram("t_seconds", "doc", ["service"], buckets=LATENCY_BUCKETS, registry=theirs)
    # On a bound, just above it, zero, below the first bound and beyond the last.
    values = [0.0, 0.001, 0.005, 0.0051, 0.01, 1, 1.5, 300, 301, 1e9]
    for value in values:
        fast.labels("echo").observe(value)
        reference.labels("echo").observe(value)

    def lines(registry: CollectorRegistry) -> list[str]:
        text = generate_latest(registry).decode()
        return [line for line in text.splitlines() if "_created" not in line]

    assert lines(ours) == lines(theirs)
    assert ours.get_sample_value("t_seconds_count", {"service": "echo"}) == len(values)
    assert ours.get_sample_value("t_seconds_bucket", {"service": "echo", "le": "0.005"}) == 3


def test_loop_histogram_refuses_a_wrong_label_count() -> None:
    histogram = LoopHistogram(
        "u_seconds", "doc", ["service", "handler"], buckets=(1,), registry=CollectorRegistry()
    )
    with pytest.raises(ValueError, match="labels"):
        histogram.labels("only-one")
