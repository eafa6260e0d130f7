"""The gateway app over ASGI with a recording producer: routes, limits, answers, metrics."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from confluent_kafka import KafkaError, KafkaException
from prometheus_client import CollectorRegistry, generate_latest

from pipeline.channels.webhook.inbound import signature_headers
from pipeline.config import Settings, bundled_dir
from pipeline.events.catalog import SchemaCatalog
from pipeline.events.model import Event
from pipeline.events.serde import SingleObjectSerde
from pipeline.runtime.publisher import Publisher
from pipeline.services.gateway import create_app
from pipeline.services.gateway.dedup import RecentIds
from pipeline.services.gateway.server import gateway_settings

SERDE = SingleObjectSerde(SchemaCatalog.load(bundled_dir("schemas")))
SLACK_SECRET = "slack-signing-secret"
WA_SECRET = "meta-app-secret"


class RecordingProducer:
    """Stands in for AsyncProducer: acknowledges at once, or fails like a dead broker."""

    def __init__(self) -> None:
        self.records: list[tuple[str, str, bytes]] = []
        self.failing = False

    async def send(self, topic: str, value: bytes, key: str, headers: Any = ()) -> Any:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.failing:
            future.set_exception(KafkaException(KafkaError(KafkaError._MSG_TIMED_OUT)))
        else:
            self.records.append((topic, key, value))
            future.set_result(None)
        return future

    def events(self) -> list[Event]:
        return [SERDE.decode(value) for _, _, value in self.records]


def gateway_config(**overrides: Any) -> Settings:
    gateway: dict[str, Any] = {
        "max_body_bytes": 2048,
        "web_tokens": {"acme": "tok-acme", "globex": "tok-globex"},
        "slack_signing_secret": SLACK_SECRET,
        "whatsapp_app_secret": WA_SECRET,
        "whatsapp_verify_token": "verify-me",
        "email_token": "tok-mail",
        "email_authserv_id": "mx.example.com",
        "webhook_sources": {"zendesk": {"secret": "zd-secret", "tenants": ["acme"]}},
        "publish_timeout_seconds": 0.2,
        **overrides,
    }
    return Settings(metrics_port=0, topic_prefix="p.", gateway=gateway)


@pytest.fixture
def producer() -> RecordingProducer:
    return RecordingProducer()


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
async def client(
    producer: RecordingProducer, registry: CollectorRegistry
) -> AsyncIterator[httpx.AsyncClient]:
    settings = gateway_config()
    publisher = Publisher(settings, producer, SERDE, "gateway")  # type: ignore[arg-type]
    app = create_app(settings, registry=registry, publisher=publisher)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gw") as http:
        yield http


def hmac_hex(secret: str, message: bytes) -> str:
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def slack_headers(
    raw: bytes, *, at: float | None = None, secret: str = SLACK_SECRET
) -> dict[str, str]:
    ts = str(int(time.time() if at is None else at))
    return {
        "X-Slack-Request-Timestamp": ts,
        "X-Slack-Signature": "v0=" + hmac_hex(secret, f"v0:{ts}:".encode() + raw),
        "Content-Type": "application/json",
    }


def slack_event(event_id: str = "Ev1", **inner: Any) -> bytes:
    event = {"type": "message", "channel": "C1", "user": "U1", "text": "hi", "ts": "1.0", **inner}
    payload = {"type": "event_callback", "team_id": "T1", "event_id": event_id, "event": event}
    return json.dumps(payload).encode()


def web_body(**fields: Any) -> dict[str, Any]:
    return {"user_id": "u1", "text": "what is 12*7?", "callback_url": "http://cb/r", **fields}


async def test_web_message_is_produced_then_answered_202(
    client: httpx.AsyncClient, producer: RecordingProducer
) -> None:
    response = await client.post(
        "/v1/web/messages",
        json=web_body(),
        headers={
            "Authorization": "Bearer tok-globex",
            "traceparent": "00-" + "a" * 32 + "-" + "b" * 16 + "-01",
        },
    )
    assert response.status_code == 202, response.text
    answer = response.json()
    assert answer["status"] == "accepted"
    [event] = producer.events()
    assert producer.records[0][0] == "p.message_received"
    assert producer.records[0][1] == "web:globex:u1"
    assert event.metadata.tenant_id == "globex"
    assert event["text"] == "what is 12*7?"
    assert answer["events"] == [
        {"event_id": str(event.id), "conversation_id": "web:globex:u1", "duplicate": False}
    ]


@pytest.mark.parametrize("auth", [None, "Bearer nope", "tok-acme"])
async def test_web_message_bad_token_is_401_and_produces_nothing(
    client: httpx.AsyncClient, producer: RecordingProducer, auth: str | None
) -> None:
    headers = {"Authorization": auth} if auth else {}
    response = await client.post("/v1/web/messages", json=web_body(), headers=headers)
    assert response.status_code == 401
    assert "token" in response.json()["error"]
    assert producer.records == []


async def test_body_limit_is_413_with_reason_before_any_check(
    client: httpx.AsyncClient, producer: RecordingProducer
) -> None:
    big = json.dumps(web_body(text="x" * 4000))
    declared = await client.post(
        "/v1/web/messages", content=big, headers={"Authorization": "Bearer tok-acme"}
    )
    assert declared.status_code == 413
    assert "2048 bytes" in declared.json()["error"]

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(10):
            yield b"x" * 500

    streamed = await client.post("/v1/webhooks/zendesk", content=chunks())
    assert streamed.status_code == 413
    assert producer.records == []


async def test_unencodable_text_is_400_and_produces_nothing(
    client: httpx.AsyncClient, producer: RecordingProducer
) -> None:
    lone_surrogate = '{"user_id": "u1", "text": "\\ud800", "callback_url": "http://cb/r"}'
    response = await client.post(
        "/v1/web/messages", content=lone_surrogate, headers={"Authorization": "Bearer tok-acme"}
    )
    assert response.status_code == 400
    assert "body.text: contains a lone UTF-16 surrogate" in response.json()["error"]
    # WhatsApp message bodies are free-form; the body's strings are checked before any
    # model reads them, and the first, valid message of the payload is not produced.
    raw = (
        b'{"object": "whatsapp_business_account", "entry": [{"changes": [{"value": {'
        b'"metadata": {"phone_number_id": "PN1"}, "messages": ['
        b'{"from": "1", "id": "w1", "type": "text", "text": {"body": "fine"}},'
        b'{"from": "1", "id": "w2", "type": "text", "text": {"body": "\\ud800"}}]}}]}]}'
    )
    signed = {"X-Hub-Signature-256": "sha256=" + hmac_hex(WA_SECRET, raw)}
    misfit = await client.post("/v1/whatsapp/webhook", content=raw, headers=signed)
    assert misfit.status_code == 400
    assert "messages.1.text.body: contains a lone UTF-16 surrogate" in misfit.json()["error"]
    assert producer.records == []


async def test_unknown_route_and_method_carry_json_reasons(client: httpx.AsyncClient) -> None:
    missing = await client.get("/v1/nothing")
    assert missing.status_code == 404
    assert missing.json()["error"]
    wrong_method = await client.get("/v1/web/messages")
    assert wrong_method.status_code == 405
    assert wrong_method.json()["error"]


async def test_slack_signed_event_accepted_and_retry_deduplicated(
    client: httpx.AsyncClient, producer: RecordingProducer
) -> None:
    raw = slack_event()
    first = await client.post("/v1/slack/events", content=raw, headers=slack_headers(raw))
    assert first.status_code == 202, first.text
    retry_headers = {**slack_headers(raw), "X-Slack-Retry-Num": "1"}
    retry = await client.post("/v1/slack/events", content=raw, headers=retry_headers)
    assert retry.status_code == 200
    assert retry.json()["status"] == "duplicate"
    assert retry.json()["events"][0]["event_id"] == first.json()["events"][0]["event_id"]
    [event] = producer.events()
    assert event.conversation_id == "slack:T1:C1:1.0"


async def test_slack_rejections_and_ignored_messages(
    client: httpx.AsyncClient, producer: RecordingProducer
) -> None:
    raw = slack_event()
    wrong = await client.post(
        "/v1/slack/events", content=raw, headers=slack_headers(raw, secret="other")
    )
    stale = await client.post(
        "/v1/slack/events", content=raw, headers=slack_headers(raw, at=time.time() - 400)
    )
    assert (wrong.status_code, stale.status_code) == (401, 401)
    assert "signature" in wrong.json()["error"]
    assert "timestamp" in stale.json()["error"]
    bot = slack_event("Ev2", bot_id="B1")
    ignored = await client.post("/v1/slack/events", content=bot, headers=slack_headers(bot))
    assert ignored.status_code == 200
    assert ignored.json()["status"] == "ignored"
    challenge = json.dumps({"type": "url_verification", "challenge": "c-123"}).encode()
    answered = await client.post(
        "/v1/slack/events", content=challenge, headers=slack_headers(challenge)
    )
    assert answered.status_code == 200
    assert answered.json() == {"challenge": "c-123"}
    assert producer.records == []


async def test_whatsapp_handshake_and_messages(
    client: httpx.AsyncClient, producer: RecordingProducer
) -> None:
    ok = await client.get(
        "/v1/whatsapp/webhook",
        params={"hub.mode": "subscribe", "hub.verify_token": "verify-me", "hub.challenge": "42"},
    )
    assert (ok.status_code, ok.text) == (200, "42")
    assert ok.headers["content-type"].startswith("text/plain")
    refused = await client.get(
        "/v1/whatsapp/webhook",
        params={"hub.mode": "subscribe", "hub.verify_token": "no", "hub.challenge": "42"},
    )
    assert refused.status_code == 403
    assert refused.json()["error"]

    messages = [
        {"from": "4911", "id": f"wamid.{i}", "type": "text", "text": {"body": f"m{i}"}}
        for i in (1, 2)
    ]
    value = {"metadata": {"phone_number_id": "PN1"}, "messages": messages}
    payload = {"object": "whatsapp_business_account", "entry": [{"changes": [{"value": value}]}]}
    raw = json.dumps(payload).encode()
    bad = await client.post(
        "/v1/whatsapp/webhook",
        content=raw,
        headers={"X-Hub-Signature-256": "sha256=" + hmac_hex("other", raw)},
    )
    assert bad.status_code == 401
    assert producer.records == []
    good = await client.post(
        "/v1/whatsapp/webhook",
        content=raw,
        headers={"X-Hub-Signature-256": "sha256=" + hmac_hex(WA_SECRET, raw)},
    )
    assert good.status_code == 200, good.text
    assert [e["text"] for e in producer.events()] == ["m1", "m2"]


async def test_broker_unavailable_is_503_with_retry_after_then_retry_produces(
    client: httpx.AsyncClient, producer: RecordingProducer
) -> None:
    raw = slack_event("Ev9")
    producer.failing = True
    down = await client.post("/v1/slack/events", content=raw, headers=slack_headers(raw))
    assert down.status_code == 503
    assert int(down.headers["Retry-After"]) > 0
    assert "retry" in down.json()["error"]
    producer.failing = False
    up = await client.post("/v1/slack/events", content=raw, headers=slack_headers(raw))
    assert up.status_code == 202
    assert len(producer.records) == 1


async def test_unconfigured_channel_is_404(producer: RecordingProducer) -> None:
    settings = gateway_config(slack_signing_secret=None, email_token=None)
    publisher = Publisher(settings, producer, SERDE, "gateway")  # type: ignore[arg-type]
    transport = httpx.ASGITransport(app=create_app(settings, publisher=publisher))
    async with httpx.AsyncClient(transport=transport, base_url="http://gw") as http:
        raw = slack_event()
        response = await http.post("/v1/slack/events", content=raw, headers=slack_headers(raw))
        assert response.status_code == 404
        assert "not configured" in response.json()["error"]
        mail = await http.post("/v1/email/inbound", json={}, headers={"Authorization": "Bearer x"})
        assert mail.status_code == 404


async def test_email_and_webhook_routes(
    client: httpx.AsyncClient, producer: RecordingProducer
) -> None:
    mail = {
        "from": "ann@example.com",
        "to": "help@example.com",
        "subject": "Hi",
        "text": "hello",
        "message_id": "<m1@x>",
        "authentication_results": "mx.example.com; dmarc=pass header.from=example.com",
    }
    auth = {"Authorization": "Bearer tok-mail"}
    spoofed = {**mail, "authentication_results": "mx.example.com; dmarc=fail"}
    refused = await client.post("/v1/email/inbound", json=spoofed, headers=auth)
    assert refused.status_code == 403
    assert "not authenticated" in refused.json()["error"]
    assert (await client.post("/v1/email/inbound", json=mail, headers=auth)).status_code == 202
    reply = {**mail, "message_id": "<m2@x>", "in_reply_to": "<m1@x>"}
    assert (await client.post("/v1/email/inbound", json=reply, headers=auth)).status_code == 202
    original, answer = producer.events()
    assert original.conversation_id == answer.conversation_id

    call = {"event": "ticket.resolved", "conversation_id": "web:acme:u1"}
    for n, path in enumerate(("/v1/webhooks/zendesk", "/webhooks/zendesk")):
        raw = json.dumps({**call, "id": f"d{n}"}).encode()
        signed = signature_headers("zd-secret", raw, time.time())
        assert (await client.post(path, content=raw, headers=signed)).status_code == 202
    assert (await client.post("/v1/webhooks/jira", content=raw, headers=signed)).status_code == 404
    unsigned = await client.post("/v1/webhooks/zendesk", content=raw)
    assert unsigned.status_code == 401
    other = json.dumps({**call, "id": "d9", "conversation_id": "web:globex:u1"}).encode()
    foreign = await client.post(
        "/v1/webhooks/zendesk",
        content=other,
        headers=signature_headers("zd-secret", other, time.time()),
    )
    assert foreign.status_code == 403
    assert "does not belong to tenant 'acme'" in foreign.json()["error"]
    webhooks = [e for e in producer.events() if e.type == "webhook_received"]
    assert len(webhooks) == 2
    assert webhooks[1]["payload_json"] == raw.decode()
    assert {e.metadata.tenant_id for e in webhooks} == {"acme"}


def test_openapi_documents_every_route_and_body() -> None:
    spec = create_app(gateway_config()).openapi()
    assert set(spec["paths"]) >= {
        "/v1/web/messages",
        "/v1/slack/events",
        "/v1/whatsapp/webhook",
        "/v1/email/inbound",
        "/v1/webhooks/{source}",
        "/healthz",
        "/readyz",
    }
    schemas = spec["components"]["schemas"]

    def refs(node: Any) -> Iterator[str]:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "$ref":
                    yield value
                else:
                    yield from refs(value)
        elif isinstance(node, list):
            for value in node:
                yield from refs(value)

    for ref in refs(spec):
        assert ref.removeprefix("#/components/schemas/") in schemas, ref
    assert (
        "conversation_id"
        in spec["paths"]["/v1/webhooks/{source}"]["post"]["description"]
        + spec["info"]["description"]
    )


async def test_metrics_count_requests_by_route_template(
    client: httpx.AsyncClient, registry: CollectorRegistry
) -> None:
    raw = b"{}"
    await client.post("/v1/webhooks/zendesk", content=raw)
    await client.post("/v1/webhooks/other", content=raw)
    text = generate_latest(registry).decode()
    assert 'pipeline_gateway_requests_total{route="/v1/webhooks/{source}",status="401"} 1.0' in text
    assert 'route="/v1/webhooks/{source}",status="404"} 1.0' in text
    assert (
        registry.get_sample_value(
            "pipeline_gateway_rejected_total", {"channel": "webhook", "status": "401"}
        )
        == 1
    )


async def test_readiness_without_lifespan_is_not_ready(client: httpx.AsyncClient) -> None:
    response = await client.get("/readyz")
    assert response.status_code == 503
    assert (await client.get("/healthz")).status_code == 200


async def test_recent_ids_waits_for_an_attempt_in_flight() -> None:
    import uuid

    recent = RecentIds(capacity=2)
    calls: list[str] = []
    release = asyncio.Event()

    async def slow() -> None:
        calls.append("slow")
        await release.wait()

    async def fast() -> None:
        calls.append("fast")

    key = uuid.uuid4()
    first = asyncio.create_task(recent.once(key, slow))
    await asyncio.sleep(0)
    second = asyncio.create_task(recent.once(key, fast))
    await asyncio.sleep(0)
    release.set()
    assert await first is True
    assert await second is False
    assert calls == ["slow"]
    for _ in range(3):
        await recent.once(uuid.uuid4(), fast)
    assert key not in recent
    assert len(recent) == 2


def test_gateway_settings_bound_librdkafka_message_timeout() -> None:
    settings = gateway_settings(gateway_config(publish_timeout_seconds=2.5))
    assert settings.producer_config()["message.timeout.ms"] == "2500"
    explicit = Settings(producer={"MESSAGE_TIMEOUT_MS": "9000"})
    assert gateway_settings(explicit).producer_config()["message.timeout.ms"] == "9000"
