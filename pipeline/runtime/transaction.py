"""Exactly-once mode: the Kafka transaction a runner's outputs, state writes and offsets
commit in.

One transactional producer per runner, with a stable ``transactional.id`` derived from
the consumer group and the instance (:func:`transactional_id`). A transaction is always
open: records are produced into it as handlers finish, and on each commit tick the
committer seals it (the :class:`TransactionGate` closes, so no record enters while it
commits; the producer is flushed, so every record in it is acknowledged and its input
finished), adds the watermarks with their finished-offsets metadata, commits, and begins
the next one. This is how Confluent's Parallel Consumer commits in its transactional
mode: everything finished up to the watermark, and the finished offsets above it, in one
transaction.

Fencing, two ways (KIP-447): ``init_transactions`` with the same transactional id fences
an older producer (a restarted instance fences its zombie and aborts its open
transaction at once), and the consumer's group metadata sent with the offsets fences a
member of an older group generation (a zombie that lost its partitions in a rebalance).
A fenced producer stops the service (:class:`~pipeline.errors.TransactionFencedError`);
an abortable failure aborts the transaction and the runner reads again from the
committed offsets (:class:`AbortableTransactionError`); a call that does not return in
time stops it too (:class:`~pipeline.errors.KafkaCallStuckError`), for its supervisor to
start a fresh instance.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
import socket
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from confluent_kafka import KafkaError, KafkaException, TopicPartition

from pipeline.config import Settings
from pipeline.errors import (
    AbortableTransactionError,
    KafkaCallStuckError,
    TransactionFencedError,
)
from pipeline.runtime.kafka_thread import KafkaThread
from pipeline.runtime.ports import (
    AckCallback,
    Headers,
    ProducerPort,
    Record,
    TransactionalProducerPort,
)

log = logging.getLogger("pipeline.runtime")

EXACTLY_ONCE = "exactly_once"
CALL_TIMEOUT_SECONDS = 30.0
# How long past its own timeout a transaction call may run before the runtime gives up
# (or half the timeout, when that is shorter).
STUCK_GRACE_SECONDS = 5.0

# Errors that mean another producer owns the transactional id now.
FENCED_ERRORS = frozenset(
    {
        KafkaError._FENCED,
        KafkaError.PRODUCER_FENCED,
        KafkaError.INVALID_PRODUCER_EPOCH,
        KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
    }
)


def exactly_once(settings: Settings) -> bool:
    return settings.processing_guarantee == EXACTLY_ONCE


def transactional_id(settings: Settings, group_id: str, consumer_config: dict[str, Any]) -> str:
    """``<group>-<instance>``, the instance being ``PIPELINE_INSTANCE_ID``, else the
    consumer's static ``group.instance.id``, else host name and process id.

    Unique per live instance (two producers with one id fence each other) and, when an
    instance id is set, stable across restarts, so a restarted instance's
    ``init_transactions`` aborts its predecessor's open transaction at once instead of
    leaving read_committed readers waiting for ``transaction.timeout.ms``.
    """
    instance = settings.instance_id or consumer_config.get("group.instance.id")
    if not instance:
        instance = f"{socket.gethostname()}-{os.getpid()}"
    return f"{group_id}-{instance}"


class TransactionGate:
    """Keeps records out of the transaction while it is sealed and committed.

    Code that produces records belonging together (one record's outputs, its dead
    letter) does it inside ``async with gate.producing()``: it waits while the gate is
    closed, and closing waits until no one is inside, so the records of one input never
    straddle two transactions.
    """

    def __init__(self) -> None:
        self._open = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._inside = 0
        self.dirty = False  # something entered since the transaction began

    @property
    def is_open(self) -> bool:
        return self._open.is_set()

    @contextlib.asynccontextmanager
    async def producing(self) -> AsyncIterator[None]:
        while not self._open.is_set():
            await self._open.wait()
        self._inside += 1
        self._idle.clear()
        self.dirty = True
        try:
            yield
        finally:
            self._inside -= 1
            if not self._inside:
                self._idle.set()

    async def close(self) -> None:
        self._open.clear()
        await self._idle.wait()

    def open(self) -> None:
        self._open.set()


class GatedProducer:
    """The transactional producer as background tasks and the Publisher see it: every
    record waits for the gate, so none slips into a transaction being committed."""

    def __init__(self, producer: ProducerPort, gate: TransactionGate) -> None:
        self._producer = producer
        self._gate = gate

    def produce_nowait(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | str | None,
        headers: Headers,
        on_ack: AckCallback,
    ) -> bool:
        if not self._gate.is_open:
            return False
        self._gate.dirty = True
        return self._producer.produce_nowait(topic, value, key, headers, on_ack)

    async def produce(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | str | None,
        headers: Headers,
        on_ack: AckCallback,
    ) -> None:
        async with self._gate.producing():
            await self._producer.produce(topic, value, key, headers, on_ack)

    async def send(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | str | None = None,
        headers: Headers = (),
    ) -> asyncio.Future[Record]:
        async with self._gate.producing():
            return await self._producer.send(topic, value, key, headers)

    async def flush(self, seconds: float) -> int:
        return await self._producer.flush(seconds)

    async def aclose(self, flush_seconds: float) -> int:
        return await self._producer.aclose(flush_seconds)


class Transaction:
    """The transaction calls, with Kafka's errors sorted into fenced (stop), abortable
    (:class:`AbortableTransactionError`) and retriable (retried here).

    Each call runs on a thread of its own (:class:`KafkaThread`), and the caller (the
    consumer thread) waits for it at most ``timeout`` seconds (the timeout librdkafka is
    given) plus a grace (:data:`STUCK_GRACE_SECONDS`, or half the timeout): librdkafka
    does not always honour its own timeout (``send_offsets_to_transaction`` can block
    while the group coordinator is down). A call past that deadline raises
    :class:`KafkaCallStuckError`: the instance gives up its producer and stops, and every
    later call raises the same at once.
    """

    def __init__(
        self,
        producer: TransactionalProducerPort,
        gate: TransactionGate,
        *,
        transactional_id: str,
        fail: Callable[[BaseException], None],
        timeout: float = CALL_TIMEOUT_SECONDS,
        thread: KafkaThread | None = None,
    ) -> None:
        self.producer = producer
        self.gate = gate
        self.transactional_id = transactional_id
        self.fail = fail
        self.timeout = timeout
        self.deadline = timeout + min(STUCK_GRACE_SECONDS, timeout / 2)
        self.thread = thread or KafkaThread(f"{transactional_id}-transactions")
        # Why the open transaction must be aborted (a record of it failed), or None.
        self.doomed: str | None = None
        self.stuck: str | None = None  # the call that never returned, once one did not

    # ------------------------------------------------------------ consumer thread

    def start(self, stopping: Callable[[], bool] = lambda: False) -> bool:
        """Fence earlier producers of this id and open the first transaction; while Kafka
        cannot be reached, try again (with one log line) until it can or ``stopping()``.
        False when it stopped first."""
        delay, said = 0.5, False
        while True:
            try:
                self._call("init_transactions", self.producer.init_transactions, self.timeout)
                break
            except AbortableTransactionError as exc:  # timed out: the cluster is not there
                if stopping():
                    return False
                if not said:
                    log.warning(
                        "cannot initialise transactional id %s yet (%s); trying again until "
                        "Kafka answers",
                        self.transactional_id,
                        exc,
                    )
                    said = True
                time.sleep(delay)
                delay = min(delay * 2, 10.0)
                if stopping():
                    return False
        self.producer.begin_transaction()
        log.info("transactional id %s initialised", self.transactional_id)
        return True

    def commit(self, offsets: list[TopicPartition], group_metadata: Any) -> None:
        """Add ``offsets`` and commit; raises AbortableTransactionError,
        TransactionFencedError or KafkaCallStuckError."""
        if self.doomed is not None:
            raise AbortableTransactionError(self.doomed)
        if offsets:
            self._call(
                "send_offsets_to_transaction",
                self.producer.send_offsets_to_transaction,
                offsets,
                group_metadata,
                self.timeout,
            )
        self._call("commit_transaction", self.producer.commit_transaction, self.timeout)

    def begin(self) -> None:
        self.doomed = None
        self.producer.begin_transaction()

    def abort(self) -> None:
        """Abort the open transaction (its records are never read by read_committed
        readers, its offsets never committed) and begin the next one."""
        try:
            self._call("abort_transaction", self.producer.abort_transaction, self.timeout)
        except (
            AbortableTransactionError
        ) as exc:  # cannot happen for an abort; keep going if it does
            log.warning("abort_transaction: %s", exc)
        self.begin()

    def _call(self, what: str, fn: Callable[..., None], *args: Any) -> None:
        if self.stuck is not None:
            raise KafkaCallStuckError(
                f"{what} not attempted: {self.stuck} never returned on transactional id "
                f"{self.transactional_id}"
            )
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                self.thread.submit(fn, *args).result(self.deadline)
                return
            except concurrent.futures.TimeoutError:
                self.stuck = what
                raise KafkaCallStuckError(
                    f"{what} did not return within {self.deadline:g}s "
                    f"(librdkafka was given {self.timeout:g}s); giving up transactional id "
                    f"{self.transactional_id}: this instance stops without committing "
                    "anything more, and its open transaction is aborted when it is "
                    "replaced"
                ) from None
            except KafkaException as exc:
                error = exc.args[0] if exc.args else None
                if not isinstance(error, KafkaError):
                    raise
                if error.fatal() or error.code() in FENCED_ERRORS:
                    raise TransactionFencedError(
                        f"{what} failed: transactional id {self.transactional_id} was fenced "
                        f"({error.str()}); another instance took over its partitions, so "
                        "this one stops without committing anything more"
                    ) from exc
                if error.txn_requires_abort():
                    raise AbortableTransactionError(f"{what} failed: {error.str()}") from exc
                if error.retriable() and time.monotonic() < deadline:
                    log.info("%s failed (%s); trying again", what, error.str())
                    time.sleep(0.1)
                    continue
                raise AbortableTransactionError(f"{what} failed: {error.str()}") from exc

    # ------------------------------------------------------------------ on the loop

    def produce_failed(self, err: KafkaError) -> None:
        """A record of the open transaction failed: the transaction will abort at the next
        commit (its other records with it) and its inputs are read again; a fenced
        producer stops the service."""
        if err.fatal() or err.code() in FENCED_ERRORS:
            self.fail(
                TransactionFencedError(
                    f"producing failed: transactional id {self.transactional_id} was fenced "
                    f"({err.str()})"
                )
            )
        elif self.doomed is None:
            self.doomed = f"a record failed: {err.str()}"
