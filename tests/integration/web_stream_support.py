"""Web streams on a real broker: gateway processes (replicas), and an SSE client that
reads a stream's events as they come."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from pipeline.dev.kafka import free_port
from tests.integration.runtime_support import start_service, stop_service

TENANT_TOKENS = {"t1": "token-of-t1", "t2": "token-of-t2"}
CHAT_SECRET = "chat-token-secret-for-tests"


@dataclass
class Replica:
    url: str
    process: Any

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.url, timeout=30)


@contextlib.contextmanager
def gateway_replicas(
    count: int,
    kafka_bootstrap: str,
    topic_prefix: str,
    logs: Path,
    env: dict[str, str] | None = None,
) -> Iterator[list[Replica]]:
    """``count`` gateway processes (``pipeline run gateway``) on the topics, ready; each
    takes the tenants' tokens and the chat token secret, and ``env``."""
    started: list[Replica] = []
    try:
        for n in range(count):
            started.append(start_replica(n, kafka_bootstrap, topic_prefix, logs, env))
        for replica in started:
            wait_ready(replica, logs)
        yield started
    finally:
        for replica in started:
            if replica.process.poll() is None:
                stop_service(replica.process)


def start_replica(
    n: int, kafka_bootstrap: str, topic_prefix: str, logs: Path, env: dict[str, str] | None = None
) -> Replica:
    """Gateway process number ``n`` (not waited for: see :func:`wait_ready`)."""
    port = free_port()
    environment = {
        "PIPELINE_GATEWAY__HOST": "127.0.0.1",
        "PIPELINE_GATEWAY__PORT": str(port),
        "PIPELINE_GATEWAY__WEB_TOKENS": json.dumps(TENANT_TOKENS),
        "PIPELINE_GATEWAY__CHAT_TOKEN_SECRET": CHAT_SECRET,
        "PIPELINE_GATEWAY__STREAM_HEARTBEAT_SECONDS": "1",
        "PIPELINE_SERVICE_NAME": f"gateway-{n}",
        **(env or {}),
    }
    process = start_service(
        "gateway",
        bootstrap=kafka_bootstrap,
        prefix=topic_prefix,
        log=logs / f"gateway-{n}.log",
        env=environment,
    )
    return Replica(f"http://127.0.0.1:{port}", process)


def wait_ready(replica: Replica, logs: Path) -> None:
    """Wait until ``replica`` answers ready (its logs in the error otherwise)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if replica.process.poll() is not None:
            raise AssertionError("a gateway exited: " + _logs(logs))
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(replica.url + "/readyz", timeout=2).status_code == 200:
                return
        time.sleep(0.1)
    raise AssertionError("a gateway did not get ready: " + _logs(logs))


def _logs(folder: Path) -> str:
    return "\n".join(p.read_text()[-2000:] for p in sorted(folder.glob("gateway-*.log")))


@dataclass
class Received:
    id: str
    event: str
    data: dict[str, Any]


class StreamClient:
    """An SSE client: the events of one open stream, as they come."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self.lines = response.aiter_lines()
        self.got: list[Received] = []

    async def next(self, seconds: float = 30.0) -> Received:
        return await asyncio.wait_for(self._next(), seconds)

    async def _next(self) -> Received:
        fields: dict[str, str] = {}
        async for line in self.lines:
            if line.startswith(":"):
                continue  # a heartbeat
            if not line:
                if "data" in fields:
                    got = Received(
                        fields.get("id", ""), fields.get("event", ""), json.loads(fields["data"])
                    )
                    self.got.append(got)
                    return got
                continue
            name, _, value = line.partition(":")
            fields[name] = value.removeprefix(" ")
        raise AssertionError("the stream ended")

    async def texts(self, count: int) -> list[str]:
        return [(await self.next()).data["text"] for _ in range(count)]


@contextlib.asynccontextmanager
async def stream(
    client: httpx.AsyncClient, params: dict[str, str], headers: dict[str, str] | None = None
) -> AsyncIterator[StreamClient]:
    async with client.stream("GET", "/v1/web/stream", params=params, headers=headers) as answer:
        assert answer.status_code == 200, (await answer.aread()).decode()
        assert answer.headers["content-type"].startswith("text/event-stream")
        yield StreamClient(answer)


async def token_for(client: httpx.AsyncClient, tenant: str, user: str) -> dict[str, Any]:
    answer = await client.post(
        "/v1/web/chat-tokens",
        json={"user_id": user},
        headers={"Authorization": f"Bearer {TENANT_TOKENS[tenant]}"},
    )
    assert answer.status_code == 201, answer.text
    body: dict[str, Any] = answer.json()
    return body
