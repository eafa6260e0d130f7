"""Dead letters on Kafka: list them, show one, redrive one, for ``pipeline dlq`` and the
console alike.

Reading: one consumer, assigned (never subscribed), never committing, reading committed
records only.

Redriving a letter produces its original value, key and headers to its source topic
again and records a ``DeadLetterRedriven`` (the operator, the time, where the copy went)
on the compacted ``dead_letter_redrives`` topic, keyed by the letter's event id. What is
guaranteed, and how:

- **Both or neither.** The copy and the record are written in one Kafka transaction:
  consumers (read_committed, as every service reads) see the copy only if the record
  is there too. A redrive that crashes half-way leaves nothing visible.
- **Never twice, even from two processes at once.** The transactional id is derived from
  the letter's event id, so two redrives of one letter share it. Each starts with
  ``init_transactions``, which fences whichever producer held the id before (aborting its
  open transaction) and returns only once that producer's last transaction is complete;
  then it reads the redrives topic to its high watermark, past any transaction still
  open there, and stops if the letter is on it. So of two concurrent redrives, either the
  second sees the first's record (:class:`AlreadyRedriven`) or it fenced the first, whose
  commit then fails (:class:`RedriveConflictError`) with nothing written. A copy of a
  letter written again after a crash has the same event id: redriving either is the one
  redrive of both.
- **After a restart.** The record is on a compacted topic with no retention, read from
  the beginning by every new store.

A redrive that crashes after ``begin_transaction`` keeps the source partition's
read_committed consumers waiting until its transaction times out
(``REDRIVE_TRANSACTION_TIMEOUT_MS``) or the next redrive of the letter fences it.
"""

from __future__ import annotations

import builtins
import threading
import time
from collections.abc import Callable

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from pipeline.config import Settings
from pipeline.deadletters.entry import (
    REDRIVE_ID,
    REDRIVE_RECORD,
    REDRIVEN_BY,
    REDRIVEN_FROM,
    DeadLetterEntry,
    Redrive,
    RedriveCodec,
    decode_entry,
    new_redrive_id,
    parse_letter_id,
)
from pipeline.errors import (
    AlreadyRedriven,
    DeadLetterError,
    RedriveConflictError,
    UnknownDeadLetterError,
)
from pipeline.events.model import utc_now
from pipeline.events.serde import SingleObjectSerde
from pipeline.events.wire import make_serde
from pipeline.observability.kafka_logs import ClusterConnection, cli_connection, wait_for_metadata
from pipeline.runtime.headers import EVENT_TYPE
from pipeline.runtime.producer import producer_config
from pipeline.runtime.transaction import FENCED_ERRORS
from pipeline.state.changelog import watermarks

REDRIVES_TOPIC = "dead_letter_redrives"
REDRIVE_TRANSACTION_TIMEOUT_MS = 30_000
READ_TIMEOUT_SECONDS = 10.0
# A redrive's check waits for transactions open on the redrives topic to end.
CHECK_TIMEOUT_SECONDS = REDRIVE_TRANSACTION_TIMEOUT_MS / 1000 + 15
LIST_CHUNK = 200  # records read at once per partition, newest first, while listing


class DeadLetterStore:
    """Dead letters of one cluster and topic prefix. Synchronous and thread-safe (the
    console calls it with ``asyncio.to_thread``); :meth:`close` when done."""

    def __init__(
        self,
        settings: Settings,
        serde: SingleObjectSerde,
        codec: RedriveCodec,
        connection: ClusterConnection | None = None,
        *,
        timeout: float = READ_TIMEOUT_SECONDS,
    ) -> None:
        self.settings = settings
        self.serde = serde
        self.codec = codec
        self.topic = settings.topic(settings.dead_letter_topic)
        self.redrives_topic = settings.topic(REDRIVES_TOPIC)
        self.connection = connection or cli_connection(settings.bootstrap_servers)
        self.timeout = timeout
        self._consumer = Consumer(
            {
                **settings.consumer_config(),
                **self.connection.client_config(),
                "group.id": f"{settings.topic_prefix}pipeline-dlq",
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "enable.partition.eof": True,
                "isolation.level": "read_committed",
            }
        )
        self._lock = threading.Lock()
        self._connected = False
        self._redrives: dict[str, Redrive] = {}  # by dead letter id
        self._redrives_read_to: dict[int, int] = {}

    @classmethod
    def from_settings(
        cls, settings: Settings, connection: ClusterConnection | None = None
    ) -> DeadLetterStore:
        return cls(
            settings,
            make_serde(settings, register=False),
            RedriveCodec(settings.resource_dir("schemas")),
            connection,
        )

    def close(self) -> None:
        with self._lock:
            self._consumer.close()

    # ------------------------------------------------------------------ reading

    def list(
        self,
        *,
        limit: int = 100,
        source_topic: str | None = None,
        tenant: Callable[[str | None], bool] | None = None,
    ) -> builtins.list[DeadLetterEntry]:
        """The newest ``limit`` dead letters, newest first; only those read from
        ``source_topic`` (a logical or a physical name) when given, and only those whose
        tenant (None when the original does not decode) ``tenant`` accepts."""
        wanted = None if source_topic is None else {source_topic, self.settings.topic(source_topic)}

        def keep(entry: DeadLetterEntry) -> bool:
            return (wanted is None or entry.source_topic in wanted) and (
                tenant is None or tenant(entry.tenant)
            )

        with self._lock:
            partitions = self._partitions(self.topic, required=True)
            self._refresh_redrives()
            found: builtins.list[DeadLetterEntry] = []
            for partition in range(partitions):
                found.extend(self._newest(partition, limit, keep))
            found.sort(key=_newest_first)
            return [e.with_redrive(self._redrives.get(e.dead_letter_id)) for e in found[:limit]]

    def get(self, letter_id: str) -> DeadLetterEntry:
        """The dead letter at ``letter_id`` (``<partition>:<offset>``), with its redrive."""
        partition, offset = parse_letter_id(letter_id)
        with self._lock:
            partitions = self._partitions(self.topic, required=True)
            if partition >= partitions:
                raise UnknownDeadLetterError(
                    f"no dead letter {letter_id}: {self.topic} has {partitions} partition(s)"
                )
            low, high = watermarks(self._consumer, self.topic, partition, self._deadline())
            if not low <= offset < high:
                held = f"offsets {low} to {high - 1}" if high > low else "no records"
                raise UnknownDeadLetterError(
                    f"no dead letter {letter_id}: {self.topic}[{partition}] holds {held}"
                )
            records = self._read(self.topic, {partition: (offset, offset + 1)})
            if not records:  # an aborted write, or compacted away
                raise UnknownDeadLetterError(f"no dead letter {letter_id} in {self.topic}")
            entry = self._entry(records[0])
            self._refresh_redrives()
            return entry.with_redrive(self._redrives.get(entry.dead_letter_id))

    # ------------------------------------------------------------------ redriving

    def redrive(self, letter_id: str, *, operator: str) -> Redrive:
        """Produce the letter's original to its source topic again, once (see the module
        docstring); AlreadyRedriven when it was, RedriveConflictError when a concurrent
        redrive of it took over."""
        if not operator.strip():
            raise DeadLetterError("a redrive needs the operator's id")
        entry = self.get(letter_id)
        if entry.redriven is not None:
            raise _already(entry.letter_id, entry.redriven)
        producer = Producer(
            {
                **producer_config(self.settings, "pipeline-dlq-redrive"),
                **self.connection.client_config(),
                "transactional.id": (
                    f"{self.settings.topic_prefix}pipeline-dlq-redrive-{entry.dead_letter_id}"
                ),
                "transaction.timeout.ms": REDRIVE_TRANSACTION_TIMEOUT_MS,
            }
        )
        # Not closed: close() would try to abort what a fencing already aborted. Nothing
        # is left queued: every record is flushed inside the transaction.
        return self._redrive(producer, entry, operator)

    def _redrive(self, producer: Producer, entry: DeadLetterEntry, operator: str) -> Redrive:
        timeout = self.timeout * 3
        try:
            producer.init_transactions(timeout)  # fences any other redrive of this letter
            with self._lock:
                self._partitions(self.redrives_topic, required=True)
                self._refresh_redrives(past_open_transactions=True)
                earlier = self._redrives.get(entry.dead_letter_id)
            if earlier is not None:
                raise _already(entry.letter_id, earlier)
            producer.begin_transaction()
            redrive_id = new_redrive_id()
            copy = self._produce(
                producer,
                entry.source_topic,
                entry.key,
                entry.value,
                [
                    *entry.headers,
                    (REDRIVEN_FROM, entry.letter_id.encode()),
                    (REDRIVE_ID, redrive_id.encode()),
                    (REDRIVEN_BY, operator.encode()),
                ],
                timeout,
            )
            redrive = Redrive(
                dead_letter_id=entry.dead_letter_id,
                letter_id=entry.letter_id,
                operator=operator,
                redrive_id=redrive_id,
                redriven_at=utc_now(),
                target_topic=entry.source_topic,
                target_partition=copy.partition() or 0,
                target_offset=copy.offset() or 0,
            )
            self._produce(
                producer,
                self.redrives_topic,
                entry.dead_letter_id.encode(),
                self.codec.encode(redrive),
                [(EVENT_TYPE, REDRIVE_RECORD.encode())],
                timeout,
            )
            producer.commit_transaction(timeout)
        except (KafkaException, SystemError) as exc:
            # A fatal error (fenced) raised while the client serves a delivery callback
            # reaches here as a SystemError whose context is the KafkaException.
            error = _kafka_error(exc)
            if error is not None and error.code() in FENCED_ERRORS:
                raise RedriveConflictError(
                    f"another redrive of dead letter {entry.letter_id} started meanwhile and "
                    "took over; nothing was produced by this one (`pipeline dlq show "
                    f"{entry.letter_id}` tells whether it finished)"
                ) from None
            if error is not None and error.txn_requires_abort():
                producer.abort_transaction(timeout)
            raise DeadLetterError(
                f"redrive of dead letter {entry.letter_id} failed, nothing was produced: {exc}"
            ) from None
        with self._lock:
            self._redrives[redrive.dead_letter_id] = redrive
        return redrive

    def _produce(
        self,
        producer: Producer,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: builtins.list[tuple[str, str | bytes | None]],
        timeout: float,
    ) -> Message:
        """Produce one record in the open transaction and wait for its acknowledgement."""
        reports: builtins.list[tuple[KafkaError | None, Message]] = []
        producer.produce(
            topic,
            value=value,
            key=key,
            headers=headers,
            on_delivery=lambda err, msg: reports.append((err, msg)),
        )
        producer.flush(timeout)
        if not reports:
            raise KafkaException(KafkaError(KafkaError._TIMED_OUT, f"{topic}: no acknowledgement"))
        error, message = reports[0]
        if error is not None:
            raise KafkaException(error)
        return message

    # ------------------------------------------------------------------ Kafka reads

    def _deadline(self, seconds: float | None = None) -> float:
        return time.monotonic() + (seconds if seconds is not None else self.timeout)

    def _partitions(self, topic: str, *, required: bool) -> int:
        """How many partitions ``topic`` has; 0, or DeadLetterError if ``required``,
        when it does not exist. The first call checks the cluster answers."""
        try:
            if not self._connected:
                wait_for_metadata(self._consumer, self.connection, self.timeout)
                self._connected = True
            meta = self._consumer.list_topics(topic, timeout=self.timeout).topics.get(topic)
        except KafkaException as exc:
            raise DeadLetterError(f"cannot read the metadata of {topic}: {exc}") from exc
        if meta is None or meta.error is not None or not meta.partitions:
            if required:
                raise DeadLetterError(
                    f"topic {topic} does not exist (`pipeline topics apply` creates it)"
                )
            return 0
        return len(meta.partitions)

    def _newest(
        self, partition: int, limit: int, keep: Callable[[DeadLetterEntry], bool]
    ) -> builtins.list[DeadLetterEntry]:
        """Up to ``limit`` kept entries of one partition, read back from its end in chunks."""
        low, end = watermarks(self._consumer, self.topic, partition, self._deadline())
        found: builtins.list[DeadLetterEntry] = []
        while end > low and len(found) < limit:
            start = max(low, end - max(limit, LIST_CHUNK))
            chunk = []
            for msg in self._read(self.topic, {partition: (start, end)}):
                try:
                    entry = self._entry(msg)
                except UnknownDeadLetterError:
                    continue  # not a dead letter: nothing an operator can act on
                if keep(entry):
                    chunk.append(entry)
            found = chunk + found
            end = start
        return found[-limit:]

    def _entry(self, msg: Message) -> DeadLetterEntry:
        raw = msg.headers() or []
        pairs = raw.items() if isinstance(raw, dict) else raw
        headers = tuple((k, v.encode() if isinstance(v, str) else (v or b"")) for k, v in pairs)
        return decode_entry(
            self.serde, msg.partition() or 0, msg.offset() or 0, msg.value() or b"", headers
        )

    def _refresh_redrives(self, *, past_open_transactions: bool = False) -> None:
        """Read what the redrives topic gained since the last read (nothing if it does
        not exist). ``past_open_transactions`` reads to the high watermark, waiting for
        transactions open there to end, instead of stopping at the last stable offset."""
        partitions = self._partitions(self.redrives_topic, required=False)
        ranges: dict[int, tuple[int, int]] = {}
        deadline = self._deadline()
        for partition in range(partitions):
            low, high = watermarks(self._consumer, self.redrives_topic, partition, deadline)
            start = max(low, self._redrives_read_to.get(partition, low))
            if start < high:
                ranges[partition] = (start, high)
        if not ranges:
            return
        reached: dict[int, int] = {}
        records = self._read(
            self.redrives_topic,
            ranges,
            strict=past_open_transactions,
            reached=reached,
            seconds=CHECK_TIMEOUT_SECONDS if past_open_transactions else None,
        )
        for msg in records:
            key = msg.key()
            name = key.decode() if isinstance(key, bytes) else str(key)
            value = msg.value()
            if value is None:
                self._redrives.pop(name, None)  # a tombstone: someone cleared the record
                continue
            try:
                self._redrives[name] = self.codec.decode(value)
            except ValueError:
                continue
        self._redrives_read_to.update(reached)

    def _read(
        self,
        topic: str,
        ranges: dict[int, tuple[int, int]],
        *,
        strict: bool = False,
        reached: dict[int, int] | None = None,
        seconds: float | None = None,
    ) -> builtins.list[Message]:
        """The committed records of ``topic`` in each partition's [start, end).

        A partition is done at its end, or at the end of what is committed (the last
        stable offset) unless ``strict``: then only at ``end``, once the transactions
        open below it ended. ``reached`` gets the offset each partition was read to.
        """
        pending = {p: end for p, (start, end) in ranges.items() if start < end}
        done: dict[int, int] = {} if reached is None else reached
        out: builtins.list[Message] = []
        if not pending:
            return out
        self._consumer.assign([TopicPartition(topic, p, ranges[p][0]) for p in pending])
        deadline = self._deadline(seconds)
        try:
            while pending:
                if time.monotonic() > deadline:
                    behind = ", ".join(f"{topic}[{p}] up to {e}" for p, e in pending.items())
                    raise DeadLetterError(f"reading {behind} did not finish in time")
                msg = self._consumer.poll(0.2)
                if msg is None:
                    continue
                partition, offset = msg.partition() or 0, msg.offset() or 0
                end = pending.get(partition)
                error = msg.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        if end is not None and (offset >= end or not strict):
                            done[partition] = min(offset, end)
                            del pending[partition]
                    elif error.fatal():
                        raise DeadLetterError(f"reading {topic}[{partition}] failed: {error}")
                    continue
                if end is None:
                    continue
                if offset < end:
                    out.append(msg)
                if offset + 1 >= end:
                    done[partition] = end
                    del pending[partition]
        except KafkaException as exc:
            raise DeadLetterError(f"reading {topic} failed: {exc}") from exc
        finally:
            self._consumer.unassign()
        return out


def _kafka_error(exc: BaseException) -> KafkaError | None:
    """The KafkaError of ``exc`` or of the exception it was raised while handling."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, KafkaException) and seen.args and isinstance(seen.args[0], KafkaError):
            return seen.args[0]
        seen = seen.__cause__ or seen.__context__
    return None


def _already(letter_id: str, redrive: Redrive) -> AlreadyRedriven:
    return AlreadyRedriven(letter_id, redrive.operator, redrive.redriven_at.isoformat())


def _newest_first(entry: DeadLetterEntry) -> tuple[float, int, int]:
    moment = entry.dead_lettered_at.timestamp() if entry.dead_lettered_at else 0.0
    return (-moment, -entry.partition, -entry.offset)
