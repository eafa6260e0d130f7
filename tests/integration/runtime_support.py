"""Helpers for runtime integration tests: make events, produce them, read outputs, run
services in subprocesses."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

from pipeline.config import Settings, bundled_dir
from pipeline.events.catalog import SchemaCatalog
from pipeline.events.model import Event, Metadata
from pipeline.events.serde import SingleObjectSerde
from pipeline.runtime.service import Service

SERDE = SingleObjectSerde(SchemaCatalog.load(bundled_dir("schemas")))
APPS_DIR = Path(__file__).parent
REPO = Path(__file__).resolve().parents[2]
# A killed member's partitions move after the session timeout: keep it short.
SHORT_SESSION = {
    "PIPELINE_CONSUMER__SESSION_TIMEOUT_MS": "6000",
    "PIPELINE_CONSUMER__HEARTBEAT_INTERVAL_MS": "500",
}


def settings_for(bootstrap: str, prefix: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "bootstrap_servers": bootstrap,
        "topic_prefix": prefix,
        "metrics_port": 0,
        "commit_interval_seconds": 0.2,
        "retry_backoff_initial_seconds": 0.01,
        "retry_backoff_max_seconds": 0.05,
        **overrides,
    }
    return Settings(**values)


def message(conversation: str, text: str, external_id: str | None = None) -> Event:
    """A web chat message_received from ``user-<conversation>``."""
    metadata = Metadata.new("message_received", conversation, tenant_id="t1", producer="test")
    return Event(
        metadata,
        {
            "channel": "web",
            "sender_id": f"user-{conversation}",
            "text": text,
            "reply_to": {"channel": "web", "address": "http://127.0.0.1/cb", "thread_id": None},
            "external_id": external_id,
        },
    )


def produce(bootstrap: str, topic: str, records: Iterable[tuple[str, bytes]]) -> int:
    """Produce (key, value) pairs with the runtime's partitioner; returns how many."""
    producer = Producer(
        # Idempotence keeps each partition in produce order even when a batch is retried
        # (a topic created a moment ago answers "leader not available" at first).
        {
            "bootstrap.servers": bootstrap,
            "partitioner": "murmur2_random",
            "linger.ms": 5,
            "enable.idempotence": True,
        }
    )
    count = 0
    for key, value in records:
        while True:
            try:
                producer.produce(topic, value=value, key=key)
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
        count += 1
    assert producer.flush(30) == 0, "inputs were not all acknowledged"
    return count


def produce_events(bootstrap: str, topic: str, events: Iterable[Event]) -> list[Event]:
    events = list(events)
    produce(bootstrap, topic, ((e.conversation_id, SERDE.encode(e)) for e in events))
    return events


class Causes:
    """Incremental ``done`` predicate: True once every wanted input id caused an output."""

    def __init__(self, wanted: set[str]) -> None:
        self.wanted = set(wanted)
        self.seen = 0

    def __call__(self, records: list[Record]) -> bool:
        for record in records[self.seen :]:
            self.wanted.discard(str(record.event().metadata.causation_id))
        self.seen = len(records)
        return not self.wanted


@dataclass
class Record:
    partition: int
    offset: int
    key: str | None
    value: bytes
    headers: list[tuple[str, bytes | None]]

    def event(self) -> Event:
        return SERDE.decode(self.value)


def read_all(
    bootstrap: str,
    topic: str,
    done: Callable[[list[Record]], bool],
    timeout: float = 120.0,
) -> list[Record]:
    """Read ``topic`` from the beginning until ``done(records)`` or the timeout."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "reader",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
        }
    )
    records: list[Record] = []
    try:
        meta = consumer.list_topics(topic, timeout=10).topics[topic]
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in meta.partitions])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not done(records):
            for msg in consumer.consume(1000, 0.2):
                if msg.error() is not None:
                    continue
                key = msg.key()
                records.append(
                    Record(
                        msg.partition() or 0,
                        msg.offset() or 0,
                        key.decode() if isinstance(key, bytes) else key,
                        msg.value() or b"",
                        [
                            (k, v.encode() if isinstance(v, str) else v)
                            for k, v in (msg.headers() or [])
                        ],
                    )
                )
    finally:
        consumer.close()
    return records


async def read_all_async(
    bootstrap: str, topic: str, done: Callable[[list[Record]], bool], seconds: float = 120.0
) -> list[Record]:
    return await asyncio.to_thread(read_all, bootstrap, topic, done, seconds)


@contextlib.asynccontextmanager
async def running(service: Service) -> AsyncIterator[asyncio.Task[None]]:
    """Run ``service`` in the background for the block; then stop it and re-raise errors."""
    stop = asyncio.Event()
    task = asyncio.create_task(service.run(stop))
    try:
        yield task
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=60)


def start_service(
    app: str, *, bootstrap: str, prefix: str, log: Path, env: Mapping[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Start ``python -m pipeline run <app>`` from the repository, its output appended to ``log``.

    It gets this environment plus its bootstrap servers and topic prefix, no metrics endpoint
    and a 0.2 s commit interval; ``env`` adds to or overrides those.
    """
    environment = {
        **os.environ,
        "PIPELINE_BOOTSTRAP_SERVERS": bootstrap,
        "PIPELINE_TOPIC_PREFIX": prefix,
        "PIPELINE_METRICS_PORT": "0",
        "PIPELINE_COMMIT_INTERVAL_SECONDS": "0.2",
        **(env or {}),
    }
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "pipeline", "run", app],
            env=environment,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=REPO,
        )


def stop_service(
    process: subprocess.Popen[bytes], signum: int = signal.SIGTERM, timeout: float = 60.0
) -> int:
    """Send ``signum`` unless the process has exited; wait up to ``timeout``; its return code."""
    process.send_signal(signum)
    return process.wait(timeout)
