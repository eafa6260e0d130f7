"""Fuzz the running gateway, `pipeline run gateway` on a real Kafka, with 10,000+ requests.

Two sources of requests, across every route:

- schemathesis, from the gateway's OpenAPI document (read from the metrics port, the
  only place it is served by default), valid and invalid by the schema; each case is
  sent as generated and once more with valid credentials;
- hand-made hostile bodies (``gateway_corpus.py``): valid bodies of every channel, kept
  or broken by deep nesting, huge and non-finite numbers, invalid UTF-8, lone
  surrogates, oversized fields, too many messages, wrong types, byte noise, truncation,
  400-digit Slack timestamps, signed so that they get past authentication.

Checked: no answer is a 5xx; every 4xx carries a JSON reason; the gateway logged no
unexpected error; and the topics hold exactly the events the 2xx answers report as
produced, so a refused request produced nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import subprocess
import sys
import time
import urllib.parse
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h11
import httpx
import pytest
import schemathesis
from confluent_kafka import Consumer, TopicPartition
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode

from pipeline.dev.kafka import free_port
from tests.environment import environment_without_settings
from tests.integration.fast_http import Connection
from tests.integration.gateway_corpus import (
    CHAT_SECRET,
    EXPECTED_REFUSALS,
    HOOK_SECRET,
    HOOK_SOURCE,
    LIMITS,
    MAIL_TOKEN,
    ROUTES,
    SLACK_SECRET,
    WA_SECRET,
    WA_VERIFY,
    WEB_TOKEN,
    Request,
    credentials,
    hostile,
    odd_requests,
)

REQUESTS = 10_000
SCHEMATHESIS_CASES = 300  # ~45 ms each to generate; each is sent twice
CONCURRENCY = 32


@dataclass
class Running:
    url: str
    metrics_url: str
    topics: list[str]
    log: Path
    pid: int

    def cpu_seconds(self) -> float:
        """CPU time the gateway process used so far (user + system)."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.fixture
def gateway(
    kafka_bootstrap: str,
    topic_prefix: str,
    make_topics: Callable[..., list[str]],
    tmp_path: Path,
) -> Iterator[Running]:
    """``pipeline run gateway`` in its own process, every channel configured."""
    topics = make_topics("message_received", "webhook_received", partitions=3)
    make_topics("web_outgoing", partitions=3)
    port, metrics_port = free_port(), free_port()
    gateway_env = {
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "WEB_TOKENS": json.dumps({"fuzz": WEB_TOKEN}),
        "CHAT_TOKEN_SECRET": CHAT_SECRET,
        "SLACK_SIGNING_SECRET": SLACK_SECRET,
        "WHATSAPP_APP_SECRET": WA_SECRET,
        "WHATSAPP_VERIFY_TOKEN": WA_VERIFY,
        "EMAIL_TOKEN": MAIL_TOKEN,
        "EMAIL_AUTHSERV_ID": "mx.example.com",
        "WEBHOOK_SECRETS": json.dumps({HOOK_SOURCE: HOOK_SECRET}),
        "PUBLISH_TIMEOUT_SECONDS": "30",
        **{key.upper(): str(value) for key, value in LIMITS.items()},
    }
    env = {
        **environment_without_settings(),
        "PIPELINE_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "PIPELINE_TOPIC_PREFIX": topic_prefix,
        "PIPELINE_METRICS_HOST": "127.0.0.1",
        "PIPELINE_METRICS_PORT": str(metrics_port),
        "PIPELINE_LOG_LEVEL": "WARNING",
        **{f"PIPELINE_GATEWAY__{key}": value for key, value in gateway_env.items()},
    }
    log = tmp_path / "gateway.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "pipeline", "run", "gateway"],
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    metrics_url = f"http://127.0.0.1:{metrics_port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{metrics_url}/readyz", timeout=2).status_code == 200:
                    break
            time.sleep(0.2)
        yield Running(f"http://127.0.0.1:{port}", metrics_url, topics, log, process.pid)
    finally:
        process.terminate()
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


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


def schemathesis_requests(spec: dict[str, Any]) -> list[Request]:
    """Cases for every operation of ``spec``, each as generated and once signed."""
    schema = schemathesis.openapi.from_dict(spec)
    operations = [result.ok() for result in schema.get_all_operations()]
    cases = st.one_of(
        [
            op.as_strategy(generation_mode=mode)
            for op in operations
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
        ]
    )
    requests: list[Request] = []

    @settings(
        max_examples=SCHEMATHESIS_CASES,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=cases)
    def collect(case: Any) -> None:
        if case.body is None or type(case.body).__name__ == "NotSet":
            raw = b""
        elif isinstance(case.body, bytes):
            raw = case.body
        else:
            raw = json.dumps(case.body).encode()
        headers = {str(k): str(v) for k, v in (case.headers or {}).items() if str(v).isascii()}
        headers.setdefault("Content-Type", "application/json")
        query = {str(k): str(v) for k, v in (case.query or {}).items()} or None
        path = case.formatted_path
        requests.append(Request(case.method, path, raw, False, headers, query, kind="schema"))
        if path.startswith("/v1/webhooks/"):
            path = f"/v1/webhooks/{HOOK_SOURCE}"  # the one configured source
        requests.append(
            Request(case.method, path, raw, True, dict(headers), query, kind="schema signed")
        )

    collect()
    return requests


@dataclass
class Tally:
    produced: int = 0
    sent: int = 0
    statuses: Counter[int] | None = None
    accepted_routes: set[str] | None = None
    refused_as_expected: set[str] | None = None


async def send_all(url: str, requests: list[Request]) -> Tally:
    """Send ``requests`` over CONCURRENCY keep-alive connections; check every answer."""
    tally = Tally(statuses=Counter(), accepted_routes=set(), refused_as_expected=set())
    failures: list[str] = []
    queue: asyncio.Queue[Request] = asyncio.Queue()
    for request in requests:
        queue.put_nowait(request)
    host, port = urllib.parse.urlsplit(url).hostname or "", urllib.parse.urlsplit(url).port or 80

    async def one(connection: Connection, request: Request) -> None:
        headers = dict(request.headers)
        if request.sign:
            extra = credentials(request)
            wanted = {k.lower() for k in extra}
            headers = {k: v for k, v in headers.items() if k.lower() not in wanted} | extra
        try:
            target = urllib.parse.quote(request.path, safe="/%")
            if request.query:
                target += "?" + urllib.parse.urlencode(request.query)
            answer = await connection.request(
                request.method, target, list(headers.items()), request.body
            )
        except (UnicodeEncodeError, h11.LocalProtocolError):
            return  # not sendable over HTTP at all
        except ConnectionError as exc:
            failures.append(f"no answer ({exc}): {request.kind} {request.body[:120]!r}")
            return
        assert tally.statuses is not None and tally.accepted_routes is not None
        tally.sent += 1
        tally.statuses[answer.status] += 1
        where = f"{request.method} {request.path} {request.body[:120]!r}"
        if answer.status >= 500:
            failures.append(f"{answer.status} for {where}: {answer.body[:300]!r}")
        elif answer.status >= 400:
            try:
                reason = json.loads(answer.body)["error"]
            except (ValueError, KeyError, TypeError):
                reason = None
            if not reason:
                failures.append(f"{answer.status} without a JSON reason: {where}")
            elif EXPECTED_REFUSALS.get(request.kind, "\0") in str(reason):
                assert tally.refused_as_expected is not None
                tally.refused_as_expected.add(request.kind)
        elif request.method == "POST":
            body = json.loads(answer.body)
            tally.produced += sum(1 for e in body["events"] if not e["duplicate"])
            if body["status"] == "accepted":
                tally.accepted_routes.add(request.path)

    async def worker() -> None:
        connection = Connection(host, port)
        try:
            while not queue.empty():
                await one(connection, queue.get_nowait())
        finally:
            await connection.close()

    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    assert not failures, f"{len(failures)} bad answers, e.g.:\n" + "\n".join(failures[:10])
    return tally


def test_fuzz_10k_requests_no_5xx_and_events_match_the_2xx_answers(
    gateway: Running, kafka_bootstrap: str
) -> None:
    started = time.monotonic()
    spec = httpx.get(f"{gateway.metrics_url}/openapi.json", timeout=10).json()
    assert httpx.get(f"{gateway.url}/openapi.json", timeout=10).status_code == 404
    requests = schemathesis_requests(spec)
    generated = time.monotonic() - started
    rng = random.Random(20260509)
    hand_made = REQUESTS - len(requests) + 200
    requests += [
        odd_requests(rng) if rng.random() < 0.1 else hostile(rng) for _ in range(hand_made)
    ]
    rng.shuffle(requests)

    client_cpu, gateway_cpu, sending = time.process_time(), gateway.cpu_seconds(), time.monotonic()
    tally = asyncio.run(send_all(gateway.url, requests))
    client_cpu = time.process_time() - client_cpu
    gateway_cpu = gateway.cpu_seconds() - gateway_cpu
    sending = time.monotonic() - sending
    stored = sum(record_count(kafka_bootstrap, topic) for topic in gateway.topics)
    elapsed = time.monotonic() - started
    print(
        f"fuzz: {tally.sent} requests in {elapsed:.1f}s ({generated:.1f}s generating "
        f"schemathesis cases); statuses {dict(sorted(tally.statuses.items()))}; "  # type: ignore[union-attr]
        f"{tally.produced} events reported, {stored} stored; sending took {sending:.1f}s, "
        f"CPU: gateway {gateway_cpu:.1f}s, client {client_cpu:.1f}s"
    )
    assert tally.sent >= REQUESTS
    assert stored == tally.produced
    # The fuzz got past authentication into parsing, limits and the producer everywhere.
    assert tally.accepted_routes == set(ROUTES)
    assert tally.produced >= REQUESTS // 10
    assert {400, 401, 404, 413} <= set(tally.statuses or ())
    assert tally.refused_as_expected == set(EXPECTED_REFUSALS)
    log = gateway.log.read_text()
    assert "unexpected error" not in log and "Traceback" not in log, log[-3000:]
