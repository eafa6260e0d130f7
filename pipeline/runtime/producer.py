"""An asyncio face for confluent-kafka's Producer.

A dedicated thread serves delivery reports (``poll``) and hands them to the event loop in
batches, so every produced record resolves a future once the broker acknowledged it, and
nothing queued is forgotten: ``close`` flushes before it returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Sequence
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
        **settings.producer_config(),
    }


AckCallback = Callable[[KafkaError | None], None]


class AsyncProducer:
    """Produce from asyncio; each record's acknowledgement comes back on the event loop.

    ``produce`` takes a callback run on the loop with the delivery error (None when the
    broker acknowledged); ``send`` wraps it in a future for code that prefers to await.
    Delivery reports are served by a task on the loop itself (``poll(0)``), so no other
    Python thread competes for the GIL once per record.
    """

    BUSY_POLL_SECONDS = 0.001
    IDLE_POLL_SECONDS = 0.05

    def __init__(self, config: dict[str, Any], loop: asyncio.AbstractEventLoop) -> None:
        self._producer = Producer(config)
        self._loop = loop
        self._loop_thread = threading.get_ident()
        self._reports: list[tuple[AckCallback, KafkaError | None]] = []
        self._reports_lock = threading.Lock()
        self._pump = loop.create_task(self._serve_reports())

    def produce_nowait(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | str | None,
        headers: Headers,
        on_ack: AckCallback,
    ) -> bool:
        """Queue one record; False (nothing queued) while librdkafka's local queue is full."""

        def report(err: KafkaError | None, _msg: Message) -> None:
            if threading.get_ident() == self._loop_thread:
                on_ack(err)
                return
            with self._reports_lock:  # a flush on another thread
                self._reports.append((on_ack, err))

        try:
            self._producer.produce(topic, value, key, headers=list(headers), on_delivery=report)
        except BufferError:
            return False
        return True

    async def produce(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | str | None,
        headers: Headers,
        on_ack: AckCallback,
    ) -> None:
        """Queue one record; waits only while librdkafka's local queue is full."""
        while not self.produce_nowait(topic, value, key, headers, on_ack):
            # The local queue is full: let delivery reports drain it.
            self._producer.poll(0)
            await asyncio.sleep(0.005)

    async def send(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | str | None = None,
        headers: Headers = (),
    ) -> asyncio.Future[None]:
        """Queue one record; the returned future resolves once the broker acknowledged it."""
        future: asyncio.Future[None] = self._loop.create_future()

        def settle(err: KafkaError | None) -> None:
            if future.done():
                return
            if err is None:
                future.set_result(None)
            else:
                future.set_exception(KafkaException(err))

        await self.produce(topic, value, key, headers, settle)
        return future

    async def _serve_reports(self) -> None:
        while True:
            served = self._producer.poll(0)
            if served:
                await asyncio.sleep(0)
            elif len(self._producer):
                await asyncio.sleep(self.BUSY_POLL_SECONDS)
            else:
                await asyncio.sleep(self.IDLE_POLL_SECONDS)

    def _hand_over(self) -> None:
        with self._reports_lock:
            if not self._reports:
                return
            batch, self._reports = self._reports, []
        # A closed loop means nobody waits for these acknowledgements any more.
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(_settle, batch)

    def flush(self, timeout: float) -> int:
        """Block until queued records are delivered or ``timeout``; returns how many remain.

        Call it off the loop (in an executor): it blocks.
        """
        remaining = self._producer.flush(timeout)
        self._hand_over()
        return int(remaining)

    async def aclose(self, flush_seconds: float) -> int:
        """Stop serving reports on the loop, flush what is queued, settle every report."""
        self._pump.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._pump
        remaining = await self._loop.run_in_executor(None, self.flush, flush_seconds)
        await asyncio.sleep(0)  # run the settles handed over by the flush
        return remaining


def _settle(batch: list[tuple[AckCallback, KafkaError | None]]) -> None:
    for on_ack, err in batch:
        on_ack(err)
