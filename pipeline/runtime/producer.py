"""An asyncio face for confluent-kafka's Producer.

A dedicated thread serves delivery reports (``poll``) and hands them to the event loop in
batches, so every produced record resolves a future once the broker acknowledged it, and
nothing queued is forgotten: ``close`` flushes before it returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Sequence
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from pipeline.config import Settings

Headers = Sequence[tuple[str, str | bytes | None]]

PRODUCER_DEFAULTS: dict[str, Any] = {
    # The partitioner Java clients and Kafka Streams use, so other tools agree where a key lives.
    "partitioner": "murmur2_random",
    "enable.idempotence": True,
    "acks": "all",
    "linger.ms": 5,
    "compression.type": "lz4",
}


def producer_config(settings: Settings, client_id: str) -> dict[str, Any]:
    """Defaults, then the shared passthrough, then producer-only settings."""
    return {
        **PRODUCER_DEFAULTS,
        "client.id": client_id,
        **settings.client_config(),
        **settings.producer,
    }


class AsyncProducer:
    """Produce from asyncio; each send returns a future settled by the delivery report."""

    def __init__(self, config: dict[str, Any], loop: asyncio.AbstractEventLoop) -> None:
        self._producer = Producer(config)
        self._loop = loop
        self._closing = threading.Event()
        self._reports: list[tuple[asyncio.Future[Message], KafkaError | None, Message]] = []
        self._reports_lock = threading.Lock()
        self._thread = threading.Thread(target=self._serve_reports, name="producer", daemon=True)
        self._thread.start()

    async def send(
        self, topic: str, value: bytes, key: bytes | str | None = None, headers: Headers = ()
    ) -> asyncio.Future[Message]:
        """Queue one record; the returned future resolves to the acknowledged Message."""
        future: asyncio.Future[Message] = self._loop.create_future()

        def report(err: KafkaError | None, msg: Message) -> None:
            with self._reports_lock:
                self._reports.append((future, err, msg))

        while True:
            try:
                self._producer.produce(
                    topic, value=value, key=key, headers=list(headers), on_delivery=report
                )
                return future
            except BufferError:
                # The local queue is full: wait for the reports thread to drain it.
                await asyncio.sleep(0.005)

    def _serve_reports(self) -> None:
        while not self._closing.is_set():
            self._producer.poll(0.05)
            self._hand_over()

    def _hand_over(self) -> None:
        with self._reports_lock:
            if not self._reports:
                return
            batch, self._reports = self._reports, []
        # A closed loop means nobody waits for these futures any more.
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(_settle, batch)

    def flush(self, timeout: float) -> int:
        """Block until queued records are delivered or ``timeout``; returns how many remain."""
        remaining = self._producer.flush(timeout)
        self._hand_over()
        return int(remaining)

    def close(self, timeout: float) -> int:
        remaining = self.flush(timeout)
        self._closing.set()
        self._thread.join()
        self._hand_over()
        return remaining


def _settle(batch: list[tuple[asyncio.Future[Message], KafkaError | None, Message]]) -> None:
    for future, err, msg in batch:
        if future.done():
            continue
        if err is None:
            future.set_result(msg)
        else:
            future.set_exception(KafkaException(err))
