"""An asyncio face for confluent-kafka's Producer.

Delivery reports are served on the event loop, so every produced record's callback runs
there once the broker acknowledged it, and nothing queued is forgotten: ``aclose``
flushes before it returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Mapping
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer, TopicPartition

from pipeline.config import Settings
from pipeline.runtime.ports import AckCallback, Headers, Record

# Chosen for a conversational workload: each turn is a handful of small records in a row,
# so a record's wait before it is sent adds up hop by hop, while under load batching is what
# keeps the broker and the clients' CPU per record low. Any of them can be overridden with
# PIPELINE_PRODUCER__<NAME> (this producer only) or PIPELINE_KAFKA__<NAME> (every client),
# e.g. PIPELINE_PRODUCER__LINGER_MS=0; see the README's performance section.
PRODUCER_DEFAULTS: dict[str, Any] = {
    # The partitioner Java clients and Kafka Streams use, so other tools agree where a key lives.
    "partitioner": "murmur2_random",
    # Every output is acknowledged by all in-sync replicas before its cause's offset commits,
    # and a retried batch is not written twice.
    "enable.idempotence": True,
    "acks": "all",
    # A record waits at most 5 ms for others to join its batch: at most 5 ms per hop when
    # traffic is light (librdkafka's and Kafka 4's default, made explicit), while under load
    # batches fill up in that time and while earlier requests are in flight.
    "linger.ms": 5,
    # A batch is sent when it reaches 1 MB even before linger.ms (librdkafka's default).
    "batch.size": 1_000_000,
    # Cheap to compress and decompress; pays off on batches of similar records.
    "compression.type": "lz4",
    # Small produce requests go out at once instead of waiting on Nagle's algorithm for the
    # acknowledgement of the previous one (older librdkafka releases keep Nagle on).
    "socket.nagle.disable": True,
}


def producer_config(
    settings: Settings, client_id: str, defaults: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Defaults (``defaults``, a service's own, over :data:`PRODUCER_DEFAULTS`), then the
    shared passthrough, then producer-only settings."""
    return {
        **PRODUCER_DEFAULTS,
        **(defaults or {}),
        "client.id": client_id,
        **settings.producer_config(),
    }


def transactional_config(
    settings: Settings,
    client_id: str,
    transactional_id: str,
    defaults: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """:func:`producer_config` for exactly-once mode.

    ``transaction.timeout.ms``: the coordinator aborts a transaction left open longer (a
    crashed instance's); it must outlast the drain on revoke, while the transaction stays
    open, so it defaults to the drain deadline plus 30 s (at least librdkafka's 60 s).
    """
    timeout_ms = max(60_000, int((settings.drain_timeout_seconds + 30) * 1000))
    return {
        "transaction.timeout.ms": timeout_ms,
        **producer_config(settings, client_id, defaults),
        "transactional.id": transactional_id,
        "enable.idempotence": True,
        "acks": "all",
    }


class AsyncProducer:
    """confluent-kafka's ``Producer`` behind :class:`~pipeline.runtime.ports.ProducerPort`:
    produce from asyncio; each record's acknowledgement comes back on the event loop.

    ``produce_nowait`` takes a callback, run on the loop with the delivery error (None
    when the broker acknowledged) and the record; ``send`` wraps it in a future for code
    that prefers to await. Delivery reports are only ever served on the loop, by a task
    that polls (``poll(0)``) and by ``flush``, so callbacks need no locks and no other
    Python thread competes for the GIL once per record.
    """

    BUSY_POLL_SECONDS = 0.001
    IDLE_POLL_SECONDS = 0.05

    def __init__(self, config: dict[str, Any], loop: asyncio.AbstractEventLoop) -> None:
        self._producer = Producer(config)
        self._loop = loop
        # Set by every produce: the report task, asleep while nothing was in flight, wakes
        # at once instead of up to IDLE_POLL_SECONDS later, so a lone record's ack (which
        # an awaited send and the next commit wait for) is served as soon as it comes.
        self._produced = asyncio.Event()
        self._pump = loop.create_task(self._serve_reports())
        # A transactional producer's commit and abort, made on another thread, may serve
        # delivery reports there: those are handed to the loop.
        self._transactional = "transactional.id" in config
        self.fatal: KafkaException | None = None
        self._loop_thread = threading.get_ident()

    def produce_nowait(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | str | None,
        headers: Headers,
        on_ack: AckCallback,
    ) -> bool:
        """Queue one record; False (nothing queued) while librdkafka's local queue is full."""
        if self._transactional:
            on_ack = self._on_loop(on_ack)
        try:
            self._producer.produce(topic, value, key, headers=list(headers), on_delivery=on_ack)
        except BufferError:
            return False
        except KafkaException as exc:
            if not self._transactional:
                raise
            # A transaction that must abort (after a broker failure, say) refuses records
            # at once. The record is reported failed, as one the broker refused would be:
            # its transaction aborts at the next commit and its inputs are read again (a
            # fatal error, such as being fenced, still stops the service from there).
            on_ack(exc.args[0], None)
            return True
        self._produced.set()
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
    ) -> asyncio.Future[Record]:
        """Queue one record; the returned future resolves to it once the broker acknowledged
        it (with its partition and offset)."""
        future: asyncio.Future[Record] = self._loop.create_future()

        def settle(err: KafkaError | None, msg: Message) -> None:
            if future.done():
                return
            if err is None:
                future.set_result(msg)
            else:
                future.set_exception(KafkaException(err))

        await self.produce(topic, value, key, headers, settle)
        return future

    def _on_loop(self, on_ack: AckCallback) -> AckCallback:
        def report(err: KafkaError | None, msg: Any) -> None:
            if threading.get_ident() == self._loop_thread:
                on_ack(err, msg)
            else:
                self._loop.call_soon_threadsafe(on_ack, err, msg)

        return report

    # Transactions (exactly-once mode): blocking calls, made off the loop.

    def init_transactions(self, timeout: float) -> None:
        self._producer.init_transactions(timeout)

    def begin_transaction(self) -> None:
        self._producer.begin_transaction()

    def send_offsets_to_transaction(
        self, offsets: list[TopicPartition], group_metadata: Any, timeout: float
    ) -> None:
        self._producer.send_offsets_to_transaction(offsets, group_metadata, timeout)

    def commit_transaction(self, timeout: float) -> None:
        self._producer.commit_transaction(timeout)

    def abort_transaction(self, timeout: float) -> None:
        self._producer.abort_transaction(timeout)

    def _poll(self) -> int:
        """Serve delivery reports; 0 once the producer hit a fatal error (a fenced
        transactional producer), which the transaction calls report themselves."""
        if self.fatal is not None:
            return 0
        try:
            return self._producer.poll(0)
        except KafkaException as exc:
            self.fatal = exc
            return 0

    async def _serve_reports(self) -> None:
        produced = self._produced
        while True:
            served = self._poll()
            if served:
                await asyncio.sleep(0)
            elif len(self._producer):
                await asyncio.sleep(self.BUSY_POLL_SECONDS)
            else:
                produced.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(produced.wait(), self.IDLE_POLL_SECONDS)

    async def flush(self, seconds: float) -> int:
        """Wait until queued records are delivered, at most ``seconds``; returns how many
        remain. Their delivery callbacks run here, on the loop.
        """
        deadline = time.monotonic() + seconds
        while len(self._producer) and time.monotonic() < deadline and self.fatal is None:
            served = self._poll()
            await asyncio.sleep(0 if served else self.BUSY_POLL_SECONDS)
        self._poll()
        return len(self._producer)

    async def aclose(self, flush_seconds: float) -> int:
        """Stop the report task, flush what is queued; returns how many were not delivered."""
        self._pump.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._pump
        return await self.flush(flush_seconds)
