"""The /metrics, /healthz and /readyz HTTP endpoint."""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry, Counter

from pipeline.observability.health import HealthServer


class Probes:
    def __init__(self) -> None:
        self.healthy: tuple[bool, str] = (True, "loop running")
        self.ready: tuple[bool, str] = (False, "no partitions assigned yet")


@pytest.fixture
def probes() -> Probes:
    return Probes()


@pytest.fixture
def registry() -> CollectorRegistry:
    registry = CollectorRegistry()
    Counter(
        "pipeline_test_requests_total", "Requests in this test.", ["kind"], registry=registry
    ).labels("a").inc(3)
    return registry


@pytest.fixture
def server(registry: CollectorRegistry, probes: Probes) -> Iterator[HealthServer]:
    server = HealthServer(
        registry, "127.0.0.1", 0, healthy=lambda: probes.healthy, ready=lambda: probes.ready
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


def get(server: HealthServer, path: str) -> tuple[int, str, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        body = response.read()
        assert response.getheader("Content-Length") == str(len(body))
        return response.status, response.getheader("Content-Type") or "", body
    finally:
        connection.close()


def test_port_zero_picks_a_free_port(server: HealthServer) -> None:
    assert server.port > 0


def test_metrics_serves_the_registry(server: HealthServer) -> None:
    status, content_type, body = get(server, "/metrics")
    assert status == 200
    assert content_type.startswith("text/plain")
    assert 'pipeline_test_requests_total{kind="a"} 3.0' in body.decode()


def test_metrics_reflect_later_changes(server: HealthServer, registry: CollectorRegistry) -> None:
    Counter("pipeline_late_total", "Registered after start.", registry=registry).inc()
    _, _, body = get(server, "/metrics")
    assert "pipeline_late_total 1.0" in body.decode()


def test_metrics_ignore_the_query_string(server: HealthServer) -> None:
    status, _, body = get(server, "/metrics?name[]=x")
    assert status == 200
    assert b"pipeline_test_requests_total" in body


def test_healthy_probe_is_200(server: HealthServer) -> None:
    status, content_type, body = get(server, "/healthz")
    assert status == 200
    assert content_type == "application/json"
    assert json.loads(body) == {"status": "ok", "reason": "loop running"}


def test_unready_probe_is_503_with_the_reason(server: HealthServer) -> None:
    status, content_type, body = get(server, "/readyz")
    assert status == 503
    assert content_type == "application/json"
    assert json.loads(body) == {"status": "unavailable", "reason": "no partitions assigned yet"}


def test_probes_are_asked_on_every_request(server: HealthServer, probes: Probes) -> None:
    probes.ready = (True, "3 partitions assigned")
    probes.healthy = (False, "poll loop stalled for 45s")
    status, _, body = get(server, "/readyz")
    assert (status, json.loads(body)["reason"]) == (200, "3 partitions assigned")
    status, _, body = get(server, "/healthz")
    assert status == 503
    assert json.loads(body) == {"status": "unavailable", "reason": "poll loop stalled for 45s"}


def test_unknown_path_is_404(server: HealthServer) -> None:
    status, content_type, body = get(server, "/admin")
    assert status == 404
    assert content_type == "application/json"
    error = json.loads(body)["error"]
    assert "/admin" in error
    assert "/metrics" in error
