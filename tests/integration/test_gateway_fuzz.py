"""Fuzz the gateway from its own OpenAPI description, against uvicorn and a real Kafka.

Schemathesis generates requests for every operation, valid and invalid by the schema
(positive and negative modes). Half the requests are then made authentic (the right
bearer token, a correct Slack, WhatsApp or webhook signature over the exact body), so
the fuzz reaches the parsers and the producer, not only the signature checks.

Checked: no answer is a 5xx; every 4xx carries a JSON reason; and the topics hold
exactly the events the 2xx answers report as produced, so a refused request produced
nothing.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import schemathesis
import uvicorn
from confluent_kafka import Consumer, TopicPartition
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode

from pipeline.channels.webhook.inbound import signature_headers
from pipeline.config import Settings
from pipeline.devkafka import free_port
from pipeline.services.gateway import create_app
from pipeline.services.gateway.server import gateway_settings

SLACK_SECRET = "fuzz-slack"
WA_SECRET = "fuzz-meta"
HOOK_SECRET = "fuzz-hook"
MAX_EXAMPLES = 300


def hmac_hex(secret: str, message: bytes) -> str:
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def authentic(path: str, raw: bytes) -> dict[str, str]:
    """Headers that make a request to ``path`` with body ``raw`` pass authentication."""
    if path == "/v1/web/messages":
        return {"Authorization": "Bearer fuzz-web"}
    if path == "/v1/email/inbound":
        return {"Authorization": "Bearer fuzz-mail"}
    if path == "/v1/slack/events":
        ts = str(int(time.time()))
        signature = "v0=" + hmac_hex(SLACK_SECRET, f"v0:{ts}:".encode() + raw)
        return {"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": signature}
    if path == "/v1/whatsapp/webhook":
        return {"X-Hub-Signature-256": "sha256=" + hmac_hex(WA_SECRET, raw)}
    if path.startswith("/v1/webhooks/"):
        return signature_headers(HOOK_SECRET, raw, time.time())
    return {}


@pytest.fixture
def gateway(
    kafka_bootstrap: str, topic_prefix: str, make_topics: Callable[..., list[str]]
) -> Iterator[tuple[str, list[str]]]:
    """The gateway under uvicorn in a thread; yields its URL and its topics."""
    topics = make_topics("message_received", "webhook_received", partitions=3)
    config = Settings(
        bootstrap_servers=kafka_bootstrap,
        topic_prefix=topic_prefix,
        metrics_port=0,
        gateway={
            "max_body_bytes": 8192,
            "web_tokens": {"fuzz": "fuzz-web"},
            "slack_signing_secret": SLACK_SECRET,
            "whatsapp_app_secret": WA_SECRET,
            "whatsapp_verify_token": "fuzz-verify",
            "email_token": "fuzz-mail",
            "webhook_secrets": {"crm": HOOK_SECRET},
            "publish_timeout_seconds": 10.0,
        },
    )
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(gateway_settings(config)),
            host="127.0.0.1",
            port=port,
            lifespan="on",
            log_config=None,
            access_log=False,
        )
    )
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}", topics
    finally:
        server.should_exit = True
        thread.join(30)


def record_count(bootstrap: str, topic: str) -> int:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "counter"})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        total = 0
        for p in partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            total += high - low
        return total
    finally:
        consumer.close()


def test_fuzz_from_openapi_no_5xx_and_nothing_produced_when_refused(
    gateway: tuple[str, list[str]], kafka_bootstrap: str
) -> None:
    url, topics = gateway
    with httpx.Client(base_url=url, timeout=30) as http:
        spec = http.get("/openapi.json").json()
    schema = schemathesis.openapi.from_dict(spec)
    operations = [result.ok() for result in schema.get_all_operations()]
    cases = st.one_of(
        [
            op.as_strategy(generation_mode=mode)
            for op in operations
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
        ]
    )
    seen: dict[str, Any] = {"produced": 0, "statuses": {}, "requests": 0}

    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=cases, sign=st.booleans())
    def one_request(case: Any, sign: bool) -> None:
        path = case.formatted_path
        if case.body is None or type(case.body).__name__ == "NotSet":
            raw = b""
        elif isinstance(case.body, bytes):
            raw = case.body
        else:
            raw = json.dumps(case.body).encode()
        headers = {str(k): str(v) for k, v in (case.headers or {}).items() if str(v).isascii()}
        headers.setdefault("Content-Type", "application/json")
        if sign:
            if path.startswith("/v1/webhooks/"):
                path = "/v1/webhooks/crm"  # the one configured source
            extra = authentic(path, raw)
            wanted = {k.lower() for k in extra}
            headers = {k: v for k, v in headers.items() if k.lower() not in wanted} | extra
        try:
            request = httpx.Request(
                case.method, url + path, params=case.query or None, headers=headers, content=raw
            )
        except (httpx.InvalidURL, UnicodeEncodeError, ValueError):
            return  # not sendable over HTTP at all; nothing to learn
        response = client.send(request)
        seen["requests"] += 1
        seen["statuses"][response.status_code] = seen["statuses"].get(response.status_code, 0) + 1
        assert response.status_code < 500, (case.method, path, raw[:200], response.text)
        if 400 <= response.status_code < 500:
            assert response.json()["error"], response.text
        if 200 <= response.status_code < 300 and path not in {"/metrics", "/openapi.json"}:
            answer = response.json() if "json" in response.headers["content-type"] else {}
            seen["produced"] += sum(
                1 for e in answer.get("events", ()) if isinstance(e, dict) and not e["duplicate"]
            )

    with httpx.Client(timeout=30) as client:
        one_request()
    assert seen["requests"] >= MAX_EXAMPLES // 2, seen
    stored = sum(record_count(kafka_bootstrap, topic) for topic in topics)
    assert stored == seen["produced"], seen
    print("fuzz", seen)  # visible with -s: the spread of statuses
