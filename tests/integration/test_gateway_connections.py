"""The gateway sheds clients that hold connections without sending requests.

``pipeline run gateway`` in its own process, on 127.0.0.1: a thousand raw sockets each
send part of a request's headers and stop. Meanwhile ``/healthz`` answers a new client
at once; every half-open socket is answered 408 and closed within the header timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from pipeline.dev.kafka import free_port
from tests.environment import environment_without_settings

HALF_OPEN = 1000
HEADER_TIMEOUT = 3.0
PROBE_LIMIT_SECONDS = 0.1


@pytest.fixture
def gateway_url(
    kafka_bootstrap: str,
    topic_prefix: str,
    make_topics: Callable[..., list[str]],
    tmp_path: Path,
) -> Iterator[str]:
    """``pipeline run gateway`` with a short header timeout; its public URL."""
    make_topics("message_received", "webhook_received", "web_outgoing", partitions=1)
    port, metrics_port = free_port(), free_port()
    env = {
        **environment_without_settings(),
        "PIPELINE_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "PIPELINE_TOPIC_PREFIX": topic_prefix,
        "PIPELINE_METRICS_HOST": "127.0.0.1",
        "PIPELINE_METRICS_PORT": str(metrics_port),
        "PIPELINE_LOG_LEVEL": "WARNING",
        "PIPELINE_GATEWAY__HOST": "127.0.0.1",
        "PIPELINE_GATEWAY__PORT": str(port),
        "PIPELINE_GATEWAY__WEB_TOKENS": json.dumps({"acme": "tok"}),
        "PIPELINE_HTTP__HEADER_TIMEOUT_SECONDS": str(HEADER_TIMEOUT),
        "PIPELINE_HTTP__MAX_CONNECTIONS": str(HALF_OPEN * 2),
    }
    log = tmp_path / "gateway.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "pipeline", "run", "gateway"],
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"http://127.0.0.1:{metrics_port}/readyz", timeout=2).is_success:
                    break
            time.sleep(0.2)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def answer_then_close(reader: asyncio.StreamReader) -> tuple[bytes, float]:
    """What the server sent before closing, and when it closed (monotonic)."""
    received = b""
    while chunk := await reader.read(4096):
        received += chunk
    return received, time.monotonic()


async def healthz_seconds(url: str) -> float:
    """How long a new client waits for ``/healthz`` (a new connection each time)."""
    async with httpx.AsyncClient(timeout=5) as http:
        started = time.monotonic()
        answer = await http.get(f"{url}/healthz")
        took = time.monotonic() - started
    assert answer.status_code == 200, answer.text
    return took


async def test_a_thousand_half_open_connections_are_closed_and_healthz_answers_meanwhile(
    gateway_url: str,
) -> None:
    port = int(gateway_url.rsplit(":", 1)[1])
    opened_at = time.monotonic()
    connections = [await asyncio.open_connection("127.0.0.1", port) for _ in range(HALF_OPEN)]
    for _, writer in connections:
        writer.write(b"POST /v1/web/messages HTTP/1.1\r\nHost: gw\r\nAuthorization: Bea")
    try:
        closing = [asyncio.create_task(answer_then_close(r)) for r, _ in connections]
        probes = []
        for _ in range(10):
            probes.append(await healthz_seconds(gateway_url))
            await asyncio.sleep(0.15)
        done = await asyncio.wait_for(asyncio.gather(*closing), HEADER_TIMEOUT + 20)
    finally:
        for _, writer in connections:
            writer.close()

    assert max(probes) < PROBE_LIMIT_SECONDS, probes
    assert all(answer.startswith(b"HTTP/1.1 408 ") for answer, _ in done)
    assert b"did not arrive within 3s" in done[0][0]
    first_closed = min(at for _, at in done) - opened_at
    assert first_closed >= HEADER_TIMEOUT - 0.05, first_closed
    last_closed = max(at for _, at in done) - opened_at
    # Within the timeout of the last socket opened, with room for a loaded machine.
    assert last_closed < HEADER_TIMEOUT + 5, last_closed
