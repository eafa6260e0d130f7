"""Per-tenant request rates and the caps on open streams: 429 with the reason, and
``Retry-After`` where waiting helps."""

from __future__ import annotations

import httpx
import pytest
from prometheus_client import CollectorRegistry

from pipeline.config import Settings
from pipeline.errors import InboundRejected
from pipeline.runtime.publisher import Publisher
from pipeline.services.gateway.app import create_app
from pipeline.services.gateway.rate_limits import TenantRateLimits
from pipeline.services.gateway.stream_hub import StreamHub
from tests.unit.services.gateway.test_app import SERDE, RecordingProducer, gateway_config, web_body


def test_a_tenant_past_its_rate_is_429_with_retry_after_and_others_go_on() -> None:
    limits = TenantRateLimits({"acme": "2/minute", "*": "1/minute"})
    limits.spend(["acme"])
    limits.spend(["acme", "acme"])  # one request for a tenant counts once
    with pytest.raises(InboundRejected) as info:
        limits.spend(["acme"])
    assert info.value.status == 429
    assert "tenant 'acme' is over its request rate of 2 per 1 minute" in info.value.reason
    assert info.value.retry_after is not None and 1 <= info.value.retry_after <= 60
    limits.spend(["globex"])  # the '*' rate, counted apart
    with pytest.raises(InboundRejected, match="'globex'"):
        limits.spend(["globex"])


def test_a_refused_request_spends_nothing_of_any_limit() -> None:
    limits = TenantRateLimits({"acme": "1/second;3/minute"})
    limits.spend(["acme"])
    for _ in range(5):
        with pytest.raises(InboundRejected, match="1 per 1 second"):
            limits.spend(["acme"])
    stats = limits.limiter.get_window_stats(limits.rates["acme"][1], "acme")
    assert stats.remaining == 2


def test_without_rates_nothing_is_limited() -> None:
    limits = TenantRateLimits({})
    for _ in range(1000):
        limits.spend(["acme"])


async def test_the_gateway_answers_429_with_retry_after_past_a_tenants_rate() -> None:
    settings = gateway_config(rate_limits={"acme": "2/minute"})
    producer = RecordingProducer()
    publisher = Publisher(settings, producer, SERDE, "gateway")  # type: ignore[arg-type]
    app = create_app(settings, registry=CollectorRegistry(), publisher=publisher)
    acme = {"Authorization": "Bearer tok-acme"}
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://gw"
    ) as http:
        # Requests that fail authentication spend nothing of the tenant's rate.
        for _ in range(3):
            bad = await http.post("/v1/web/messages", json=web_body(), headers={})
            assert bad.status_code == 401
        for n in range(2):
            sent = await http.post("/v1/web/messages", json=web_body(message_id=f"m{n}"))
            assert sent.status_code == 401
            sent = await http.post(
                "/v1/web/messages", json=web_body(message_id=f"m{n}"), headers=acme
            )
            assert sent.status_code == 202, sent.text
        refused = await http.post("/v1/web/messages", json=web_body(message_id="m9"), headers=acme)
        other = await http.post(
            "/v1/web/messages", json=web_body(), headers={"Authorization": "Bearer tok-globex"}
        )
    assert refused.status_code == 429
    assert "over its request rate" in refused.json()["error"]
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert other.status_code == 202
    assert len(producer.records) == 3


def hub(**gateway: int) -> StreamHub:
    return StreamHub(Settings(metrics_port=0, gateway=gateway))


def test_streams_past_the_clients_cap_are_429_and_closing_one_frees_a_place() -> None:
    streams = hub(stream_max_per_client=2, stream_max_per_conversation=10)
    first = streams.open("acme", "web:acme:a", "10.0.0.1")
    streams.open("globex", "web:globex:b", "10.0.0.1")
    with pytest.raises(InboundRejected) as info:
        streams.open("acme", "web:acme:c", "10.0.0.1")
    assert info.value.status == 429
    assert "too many open streams from this client (at most 2" in info.value.reason
    streams.open("acme", "web:acme:c", "10.0.0.2")  # another client
    streams.close(first)
    streams.open("acme", "web:acme:d", "10.0.0.1")
    assert streams.open_streams == 3


def test_streams_past_the_tenants_cap_are_429_whatever_the_client() -> None:
    streams = hub(stream_max_per_tenant=2, stream_max_per_conversation=10)
    streams.open("acme", "web:acme:a", "10.0.0.1")
    streams.open("acme", "web:acme:b", "10.0.0.2")
    with pytest.raises(InboundRejected) as info:
        streams.open("acme", "web:acme:c", "10.0.0.3")
    assert info.value.status == 429
    assert "too many open streams for this tenant (at most 2" in info.value.reason
    streams.open("globex", "web:globex:a", "10.0.0.3")
