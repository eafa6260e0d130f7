"""What the gateway shows on its public port, and what only on the metrics port.

The public port serves the channels, /healthz and a bare /readyz. Metrics, the API
documentation and the reason the gateway is not ready (which names the brokers) are on
the metrics port; ``public_docs`` puts the documentation on the public port too.
"""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator

import httpx
import pytest

from pipeline.dev.kafka import free_port
from pipeline.observability.health import HealthServer
from pipeline.services.gateway import GatewayServer, create_app
from tests.unit.services.gateway.test_app import gateway_config

DOWN = (False, "Kafka at 10.9.8.7:9092 does not answer: Local: Broker transport failure")
OPERATOR_ONLY = ("/metrics", "/docs", "/redoc", "/openapi.json", "/docs/oauth2-redirect")


async def get(settings_overrides: dict[str, object], path: str) -> httpx.Response:
    app = create_app(gateway_config(**settings_overrides))
    app.state.gateway.readiness._verdict = DOWN
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
        return await client.get(path)


@pytest.mark.parametrize("path", OPERATOR_ONLY)
async def test_public_port_serves_no_metrics_and_no_docs_by_default(path: str) -> None:
    response = await get({}, path)
    assert response.status_code == 404
    assert response.json()["error"]


async def test_public_docs_setting_serves_the_docs_but_never_metrics() -> None:
    assert (await get({"public_docs": True}, "/docs")).status_code == 200
    assert (await get({"public_docs": True}, "/redoc")).status_code == 200
    spec = (await get({"public_docs": True}, "/openapi.json")).json()
    assert "/v1/web/messages" in spec["paths"] and "/metrics" not in spec["paths"]
    assert (await get({"public_docs": True}, "/metrics")).status_code == 404


async def test_public_readyz_says_not_ready_without_the_reason() -> None:
    response = await get({}, "/readyz")
    assert response.status_code == 503
    assert response.json() == {"status": "unavailable", "reason": "not ready"}
    assert "10.9.8.7" not in response.text


@pytest.fixture
def operator_port() -> Iterator[tuple[GatewayServer, HealthServer]]:
    settings = gateway_config().model_copy(
        update={"metrics_port": free_port(), "metrics_host": "127.0.0.1"}
    )
    server = GatewayServer(settings)
    server.gateway.readiness._verdict = DOWN
    health = server.health_server()
    assert health is not None
    health.start()
    try:
        yield server, health
    finally:
        health.stop()


def fetch(health: HealthServer, path: str) -> tuple[int, str, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", health.port, timeout=5)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.getheader("Content-Type") or "", response.read()
    finally:
        connection.close()


def test_metrics_port_serves_metrics_docs_and_the_readiness_reason(
    operator_port: tuple[GatewayServer, HealthServer],
) -> None:
    server, health = operator_port
    status, content_type, body = fetch(health, "/openapi.json")
    assert (status, content_type) == (200, "application/json")
    assert json.loads(body) == server.app.openapi()
    for page in ("/docs", "/redoc"):
        status, content_type, body = fetch(health, page)
        assert status == 200 and content_type.startswith("text/html")
        assert b"/openapi.json" in body
    status, _, body = fetch(health, "/readyz")
    assert status == 503 and "10.9.8.7" in json.loads(body)["reason"]
    status, _, body = fetch(health, "/metrics")
    assert status == 200 and b"pipeline_gateway_requests_total" in body


def test_no_metrics_port_means_no_operator_pages() -> None:
    assert GatewayServer(gateway_config()).health_server() is None


async def test_an_unexpected_error_is_a_json_500_that_reveals_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from pipeline.channels.web import inbound as web

    def broken(body: bytes, tenant: str) -> object:
        raise RuntimeError("secret internals at 10.9.8.7")

    monkeypatch.setattr(web, "parse", broken)
    app = create_app(gateway_config())
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
        response = await client.post(
            "/v1/web/messages", json={}, headers={"Authorization": "Bearer tok-acme"}
        )
    assert response.status_code == 500
    assert response.json() == {"error": "internal error; the request was not stored"}
