"""The gateway under uvicorn on a free port, producing to a real Kafka.

What a request produced is checked by reading the topic: the high watermarks count every
record, so "nothing produced" is exact, not a wait that happened to see nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry, generate_latest

from pipeline.channels.webhook.inbound import signature_headers
from pipeline.config import Settings
from pipeline.dev.kafka import free_port
from tests.integration.gateway_support import record_count, serving
from tests.integration.runtime_support import Record, read_all_async

SLACK_SECRET = "slack-signing-secret"
WA_SECRET = "meta-app-secret"
ZD_SECRET = "zendesk-secret"


def settings_for(bootstrap: str, prefix: str, **gateway: Any) -> Settings:
    values: dict[str, Any] = {
        "web_tokens": {"acme": "tok-acme"},
        "slack_signing_secret": SLACK_SECRET,
        "whatsapp_app_secret": WA_SECRET,
        "whatsapp_verify_token": "verify-me",
        "email_token": "tok-mail",
        "email_authserv_id": "mx.example.com",
        "webhook_sources": {"zendesk": {"secret": ZD_SECRET, "tenants": ["acme"]}},
        "publish_timeout_seconds": 10.0,
        **gateway,
    }
    return Settings(
        bootstrap_servers=bootstrap, topic_prefix=prefix, metrics_port=0, gateway=values
    )


async def read(bootstrap: str, topic: str, count: int) -> list[Record]:
    """Exactly the ``count`` records of ``topic`` (fails if there are more)."""
    assert await asyncio.to_thread(record_count, bootstrap, topic) == count
    if count == 0:
        return []
    records = await read_all_async(bootstrap, topic, lambda r: len(r) >= count, 60)
    assert len(records) == count
    return records


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


def slack_message(event_id: str, **inner: Any) -> bytes:
    event = {"type": "message", "channel": "C1", "user": "U1", "text": "hi", "ts": "17.1", **inner}
    payload = {"type": "event_callback", "team_id": "T1", "event_id": event_id, "event": event}
    return json.dumps(payload).encode()


@pytest.fixture
def topics(make_topics: Callable[..., list[str]]) -> tuple[str, str]:
    messages, webhooks = make_topics("message_received", "webhook_received", partitions=3)
    return messages, webhooks


async def test_slack_signed_accepted_bad_refused_retry_deduplicated(
    kafka_bootstrap: str, topic_prefix: str, topics: tuple[str, str]
) -> None:
    async with serving(settings_for(kafka_bootstrap, topic_prefix)) as http:
        raw = slack_message("Ev1")
        wrong = await http.post(
            "/v1/slack/events", content=raw, headers=slack_headers(raw, secret="nope")
        )
        stale = await http.post(
            "/v1/slack/events", content=raw, headers=slack_headers(raw, at=time.time() - 301)
        )
        assert (wrong.status_code, stale.status_code) == (401, 401)
        assert wrong.json()["error"] and stale.json()["error"]

        challenge = json.dumps({"type": "url_verification", "challenge": "ch-1"}).encode()
        verified = await http.post(
            "/v1/slack/events", content=challenge, headers=slack_headers(challenge)
        )
        assert (verified.status_code, verified.json()) == (200, {"challenge": "ch-1"})

        accepted = await http.post("/v1/slack/events", content=raw, headers=slack_headers(raw))
        assert accepted.status_code == 202, accepted.text
        retry = await http.post(
            "/v1/slack/events",
            content=raw,
            headers={**slack_headers(raw), "X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "x"},
        )
        assert retry.status_code == 200
        assert retry.json()["status"] == "duplicate"
        bot = slack_message("Ev2", bot_id="B1", subtype="bot_message")
        assert (
            await http.post("/v1/slack/events", content=bot, headers=slack_headers(bot))
        ).status_code == 200

    [record] = await read(kafka_bootstrap, topics[0], 1)
    event = record.event()
    assert str(event.id) == accepted.json()["events"][0]["event_id"]
    assert record.key == event.conversation_id == "slack:T1:C1:17.1"
    assert event["reply_to"] == {"channel": "slack", "address": "C1", "thread_id": "17.1"}
    assert event["external_id"] == "Ev1"


async def test_whatsapp_handshake_two_messages_and_bad_signature(
    kafka_bootstrap: str, topic_prefix: str, topics: tuple[str, str]
) -> None:
    async with serving(settings_for(kafka_bootstrap, topic_prefix)) as http:
        query = {"hub.mode": "subscribe", "hub.verify_token": "verify-me", "hub.challenge": "987"}
        handshake = await http.get("/v1/whatsapp/webhook", params=query)
        assert (handshake.status_code, handshake.text) == (200, "987")
        bad_token = await http.get(
            "/v1/whatsapp/webhook", params={**query, "hub.verify_token": "guess"}
        )
        assert bad_token.status_code == 403

        messages = [
            {"from": "4915", "id": f"wamid.{n}", "type": "text", "text": {"body": f"msg {n}"}}
            for n in (1, 2)
        ]
        value = {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "1555", "phone_number_id": "PN1"},
            "contacts": [{"profile": {"name": "Kim"}, "wa_id": "4915"}],
            "messages": messages,
        }
        raw = json.dumps(
            {
                "object": "whatsapp_business_account",
                "entry": [{"id": "W", "changes": [{"field": "messages", "value": value}]}],
            }
        ).encode()
        forged = await http.post(
            "/v1/whatsapp/webhook",
            content=raw,
            headers={"X-Hub-Signature-256": "sha256=" + hmac_hex("forged", raw)},
        )
        assert forged.status_code == 401
        assert await asyncio.to_thread(record_count, kafka_bootstrap, topics[0]) == 0
        signed = await http.post(
            "/v1/whatsapp/webhook",
            content=raw,
            headers={"X-Hub-Signature-256": "sha256=" + hmac_hex(WA_SECRET, raw)},
        )
        assert signed.status_code == 200, signed.text
        assert len(signed.json()["events"]) == 2

    records = await read(kafka_bootstrap, topics[0], 2)
    events = sorted((r.event() for r in records), key=lambda e: e["external_id"])
    assert [e["text"] for e in events] == ["msg 1", "msg 2"]
    assert {r.key for r in records} == {"whatsapp:PN1:4915"}
    assert events[0]["reply_to"] == {"channel": "whatsapp", "address": "4915", "thread_id": None}
    assert events[0]["sender_name"] == "Kim"


async def test_email_reply_lands_in_the_original_conversation(
    kafka_bootstrap: str, topic_prefix: str, topics: tuple[str, str]
) -> None:
    original = {
        "from": "Ann <ann@example.com>",
        "to": "support@example.com",
        "subject": "Invoice",
        "text": "Where is my invoice?",
        "message_id": "<orig-1@mail.example.com>",
        "authentication_results": "mx.example.com; dkim=pass header.d=example.com",
    }
    reply = {
        **original,
        "subject": "Re: Invoice",
        "text": "Still waiting",
        "message_id": "<reply-1@mail.example.com>",
        "in_reply_to": "<orig-1@mail.example.com>",
    }
    auth = {"Authorization": "Bearer tok-mail"}
    async with serving(settings_for(kafka_bootstrap, topic_prefix)) as http:
        refused = await http.post(
            "/v1/email/inbound", json=original, headers={"Authorization": "Bearer x"}
        )
        assert refused.status_code == 401
        first = await http.post("/v1/email/inbound", json=original, headers=auth)
        second = await http.post("/v1/email/inbound", json=reply, headers=auth)
        assert (first.status_code, second.status_code) == (202, 202)

    records = await read(kafka_bootstrap, topics[0], 2)
    by_id = {r.event()["external_id"]: r.event() for r in records}
    a, b = by_id["<orig-1@mail.example.com>"], by_id["<reply-1@mail.example.com>"]
    assert a.conversation_id == b.conversation_id
    assert b["reply_to"]["thread_id"] == "<orig-1@mail.example.com>"
    assert b["attributes"]["references"] == "<reply-1@mail.example.com>"
    assert b["attributes"]["in_reply_to"] == "<orig-1@mail.example.com>"


async def test_webhook_signed_accepted_and_bad_signature_refused(
    kafka_bootstrap: str, topic_prefix: str, topics: tuple[str, str]
) -> None:
    raw = json.dumps(
        {"event": "ticket.resolved", "conversation_id": "web:acme:u1", "id": "d-1", "ticket": 7}
    ).encode()
    signed = signature_headers(ZD_SECRET, raw, time.time())
    async with serving(settings_for(kafka_bootstrap, topic_prefix)) as http:
        bad = await http.post(
            "/v1/webhooks/zendesk",
            content=raw,
            headers={**signed, "X-Signature-256": "sha256=" + hmac_hex(ZD_SECRET, raw)},
        )
        stale = await http.post(
            "/v1/webhooks/zendesk",
            content=raw,
            headers=signature_headers(ZD_SECRET, raw, time.time() - 301),
        )
        unknown = await http.post("/v1/webhooks/salesforce", content=raw, headers=signed)
        assert (bad.status_code, stale.status_code, unknown.status_code) == (401, 401, 404)
        assert "replay" in stale.json()["error"]
        ok = await http.post("/v1/webhooks/zendesk", content=raw, headers=signed)
        resend = await http.post("/v1/webhooks/zendesk", content=raw, headers=signed)
        assert (ok.status_code, resend.status_code) == (202, 200)

    [record] = await read(kafka_bootstrap, topics[1], 1)
    event = record.event()
    assert record.key == "web:acme:u1"
    assert (event["source"], event["event_name"], event["external_id"]) == (
        "zendesk",
        "ticket.resolved",
        "d-1",
    )
    assert json.loads(event["payload_json"])["ticket"] == 7


async def test_web_message_ready_metrics_and_trace(
    kafka_bootstrap: str, topic_prefix: str, topics: tuple[str, str]
) -> None:
    registry = CollectorRegistry()
    async with serving(settings_for(kafka_bootstrap, topic_prefix), registry) as http:
        deadline = time.monotonic() + 20
        while (ready := await http.get("/readyz")).status_code != 200:
            assert time.monotonic() < deadline, ready.text
            await asyncio.sleep(0.2)
        parent = "00-" + "1" * 32 + "-" + "2" * 16 + "-01"
        response = await http.post(
            "/v1/web/messages",
            json={
                "user_id": "u1",
                "text": "what is 12*7?",
                "callback_url": "http://127.0.0.1:9/cb",
            },
            headers={"Authorization": "Bearer tok-acme", "traceparent": parent},
        )
        assert response.status_code == 202, response.text
        # Metrics are on the metrics port, not this one
        # (tests/unit/services/gateway/test_server.py).
        assert (await http.get("/metrics")).status_code == 404
        metrics = generate_latest(registry).decode()
    assert 'pipeline_gateway_requests_total{route="/v1/web/messages",status="202"} 1.0' in metrics
    assert "pipeline_events_produced_total" in metrics
    [record] = await read(kafka_bootstrap, topics[0], 1)
    assert record.key == "web:acme:u1"
    assert str(record.event().id) == response.json()["events"][0]["event_id"]
    trace = dict(record.headers)["traceparent"]
    assert trace is not None and trace.decode().startswith("00-" + "1" * 32)


async def test_kafka_unavailable_is_503_with_retry_after() -> None:
    settings = settings_for("127.0.0.1:1", "none.", publish_timeout_seconds=1.0)
    async with serving(settings) as http:
        started = time.monotonic()
        response = await http.post(
            "/v1/web/messages",
            json={"user_id": "u1", "text": "hello", "callback_url": "http://127.0.0.1:9/cb"},
            headers={"Authorization": "Bearer tok-acme"},
        )
        assert response.status_code == 503
        assert int(response.headers["Retry-After"]) > 0
        assert "retry" in response.json()["error"]
        assert time.monotonic() - started < 10
        # Still ready, so that clients keep getting the 503 rather than no endpoint at all;
        # the public port never names the brokers, whatever the readiness check found.
        deadline = time.monotonic() + 10
        while (ready := await http.get("/readyz")).json()["reason"] != "degraded":
            assert time.monotonic() < deadline, ready.text
            await asyncio.sleep(0.1)
        assert ready.status_code == 200
        assert ready.json() == {"status": "ok", "reason": "degraded"}


async def test_sigterm_finishes_accepted_requests_and_exits_cleanly(
    kafka_bootstrap: str, topic_prefix: str, topics: tuple[str, str]
) -> None:
    port = free_port()
    env = {
        **os.environ,
        "PIPELINE_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "PIPELINE_TOPIC_PREFIX": topic_prefix,
        "PIPELINE_METRICS_PORT": "0",
        "PIPELINE_GATEWAY__HOST": "127.0.0.1",
        "PIPELINE_GATEWAY__PORT": str(port),
        "PIPELINE_GATEWAY__WEB_TOKENS": json.dumps({"acme": "tok-acme"}),
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "pipeline",
        "run",
        "gateway",
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
            deadline = time.monotonic() + 30
            while True:
                with contextlib.suppress(httpx.TransportError):
                    if (await http.get("/healthz")).status_code == 200:
                        break
                assert process.returncode is None, "the gateway exited before serving"
                assert time.monotonic() < deadline
                await asyncio.sleep(0.1)

            async def send(n: int) -> int | None:
                try:
                    response = await http.post(
                        "/v1/web/messages",
                        json={"user_id": f"u{n}", "text": "hi", "callback_url": "http://x/cb"},
                        headers={"Authorization": "Bearer tok-acme"},
                    )
                except httpx.TransportError:
                    return None  # refused after the signal: the client retries elsewhere
                return response.status_code

            sends = [asyncio.create_task(send(n)) for n in range(20)]
            await asyncio.sleep(0.01)
            process.send_signal(signal.SIGTERM)
            statuses = await asyncio.gather(*sends)
        code = await asyncio.wait_for(process.wait(), 60)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert code == 0
    assert set(statuses) <= {202, 503, None}, statuses
    accepted = statuses.count(202)
    assert accepted >= 1, statuses
    await read(kafka_bootstrap, topics[0], accepted)
