"""Each gateway replica's reader of ``web_outgoing`` and ``response_delta``, and the
streams it feeds.

Every replica reads every partition of both topics itself (assigned, not subscribed: no
consumer group, no commits), from the end as it was when the replica started, on a
worker thread. Each record goes to the streams this replica holds for its conversation;
another replica pushes the same record to the streams it holds. A stream's event ids
are marks (:class:`~pipeline.channels.web.stream_log.StreamMark`): the last offset it
sent, or stood after, in the conversation's partition of each topic. A stream that
reconnects with its last mark is first given what it missed, read from Kafka (so any
replica can serve it), then the live records after it: the stream registers for live
records before the catch-up reads up to the end, and skips any live record at or before
its mark, so nothing is lost in between and nothing is sent twice. Deltas of an answer
the stream already sent are skipped. Without a ``response_delta`` topic the streams
carry messages only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from pipeline.channels.web.stream_log import (
    DELTA_EVENT,
    STREAM_EVENT,
    StreamMark,
    consume_available,
    partition_count,
    read_partition,
    reader,
)
from pipeline.config import Settings
from pipeline.errors import InboundRejected, PipelineError, SerdeError
from pipeline.events.serde import SingleObjectSerde
from pipeline.partitioner import partition_for
from pipeline.services.gateway.stream_items import Delta, Item, Outgoing, decode_item
from pipeline.state.changelog import watermarks

log = logging.getLogger(__name__)

QUEUE_LIMIT = 1000
"""Records waiting for one slow stream; beyond it the stream is closed, and the client's
reconnect (with its last event id) reads them from Kafka instead."""
RECENT_IDS = 64
START_TIMEOUT_SECONDS = 30.0
RETRY_SECONDS = 2.0


@dataclass(eq=False)
class Stream:
    """One open stream: its conversation, its queue, what it already sent."""

    tenant: str
    conversation_id: str
    client: str = "unknown"
    queue: asyncio.Queue[Item | None] = field(default_factory=lambda: asyncio.Queue(QUEUE_LIMIT))
    partition: int = 0
    last_offset: int = -1
    last_delta: int | None = None  # None: deltas are not read again on a reconnect
    sent_ids: deque[str] = field(default_factory=lambda: deque(maxlen=RECENT_IDS))
    answered: deque[str] = field(default_factory=lambda: deque(maxlen=RECENT_IDS))

    def fresh(self, item: Item) -> bool:
        """True when ``item`` was not sent on this stream yet; then it counts as sent.
        A delta of an answer the stream sent already is never fresh."""
        if item.event_id in self.sent_ids:
            return False
        if isinstance(item, Delta):
            if self.last_delta is not None and item.offset <= self.last_delta:
                return False
            self.last_delta = item.offset
            if item.stream_id in self.answered:
                return False
        else:
            if item.position.offset <= self.last_offset:
                return False
            self.last_offset = item.position.offset
            if item.stream_id is not None:
                self.answered.append(item.stream_id)
        self.sent_ids.append(item.event_id)
        return True

    @property
    def mark(self) -> StreamMark:
        """Where the stream stands: the id of the event it sends next."""
        return StreamMark(self.partition, self.last_offset, self.last_delta)


class StreamHub:
    """The replica's live reader and its open streams, by conversation."""

    def __init__(self, settings: Settings, client_config: Mapping[str, Any] | None = None) -> None:
        self.settings = settings
        # Logs and errors of the reader's clients (a ClusterConnection's), with the settings.
        self._config = {**settings.consumer_config(), **(client_config or {})}
        self.section = settings.gateway
        self.topic = settings.topic(STREAM_EVENT)
        self.delta_topic = settings.topic(DELTA_EVENT)
        self._serde: SingleObjectSerde | None = None
        self._streams: dict[str, set[Stream]] = {}
        self._per_tenant: dict[str, int] = {}
        self._per_client: dict[str, int] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._started = asyncio.Event()
        self._failed: str | None = None
        self.partitions = 0
        self.delta_partitions = 0  # 0: no response_delta topic, no deltas
        self.undecodable = 0
        # The last offset dispatched per (topic, partition), on the event loop: a stream
        # opened now gets every record after it live.
        self._dispatched: dict[tuple[str, int], int] = {}

    # ------------------------------------------------------------------ streams

    def open(self, tenant: str, conversation_id: str, client: str = "unknown") -> Stream:
        """Register a stream for live records; 429 over the conversation's, the tenant's
        or the client address's bound."""
        section = self.section
        held = len(self._streams.get(conversation_id, ()))
        if held >= section.stream_max_per_conversation:
            raise InboundRejected(
                429,
                f"too many open streams for this conversation (at most "
                f"{section.stream_max_per_conversation} on this replica)",
            )
        if self._per_tenant.get(tenant, 0) >= section.stream_max_per_tenant:
            raise InboundRejected(
                429,
                f"too many open streams for this tenant (at most "
                f"{section.stream_max_per_tenant} on this replica)",
            )
        if self._per_client.get(client, 0) >= section.stream_max_per_client:
            raise InboundRejected(
                429,
                f"too many open streams from this client (at most "
                f"{section.stream_max_per_client} on this replica)",
            )
        stream = Stream(tenant, conversation_id, client)
        baseline = self.baseline(conversation_id)
        stream.partition, stream.last_offset = baseline.partition, baseline.offset
        stream.last_delta = baseline.delta
        self._streams.setdefault(conversation_id, set()).add(stream)
        _count(self._per_tenant, tenant, 1)
        _count(self._per_client, client, 1)
        return stream

    def close(self, stream: Stream) -> None:
        streams = self._streams.get(stream.conversation_id)
        if streams is None or stream not in streams:
            return
        streams.discard(stream)
        if not streams:
            del self._streams[stream.conversation_id]
        _count(self._per_tenant, stream.tenant, -1)
        _count(self._per_client, stream.client, -1)

    @property
    def open_streams(self) -> int:
        return sum(self._per_tenant.values())

    async def ready(self) -> None:
        """Wait until the live reader has its start positions; 503 while it cannot get
        them (the topic is missing, Kafka does not answer)."""
        if self._started.is_set():
            return
        if self._failed is not None:
            raise InboundRejected(503, f"the stream reader is not running: {self._failed}")
        try:
            await asyncio.wait_for(self._started.wait(), START_TIMEOUT_SECONDS)
        except TimeoutError:
            raise InboundRejected(503, "the stream reader is not running yet") from None

    def partition_of(self, conversation_id: str) -> int:
        """The conversation's partition of ``web_outgoing`` (0 before the reader started)."""
        if not self.partitions:
            return 0
        return partition_for(conversation_id, self.partitions)

    def delta_partition_of(self, conversation_id: str) -> int | None:
        if not self.delta_partitions:
            return None
        return partition_for(conversation_id, self.delta_partitions)

    def baseline(self, conversation_id: str) -> StreamMark:
        """The mark of a stream of ``conversation_id`` opened now: after the last record
        of each topic dispatched live (so it gets every later one live)."""
        partition = self.partition_of(conversation_id)
        offset = self._dispatched.get((self.topic, partition), -1)
        delta = None
        delta_partition = self.delta_partition_of(conversation_id)
        if delta_partition is not None:
            delta = self._dispatched.get((self.delta_topic, delta_partition), -1)
        return StreamMark(partition, offset, delta)

    async def catch_up(self, stream: Stream, after: StreamMark) -> tuple[list[Item], bool]:
        """What ``stream``'s conversation got after ``after``, read from Kafka up to the
        end (the deltas too, when the mark says where it stood in them), oldest first;
        and whether some messages could not be read (expired, or over the bound)."""
        key = stream.conversation_id.encode()
        config = self._config
        limit = self.section.stream_catchup_max_records
        delta_partition = self.delta_partition_of(stream.conversation_id)

        def read() -> tuple[list[Message], list[Message], bool]:
            consumer = reader(config)
            try:
                scan = read_partition(
                    consumer,
                    self.topic,
                    after.partition,
                    after.offset + 1,
                    keep=lambda msg: msg.key() == key,
                    limit=limit,
                    timeout=START_TIMEOUT_SECONDS,
                )
                deltas: list[Message] = []
                if after.delta is not None and delta_partition is not None:
                    deltas = read_partition(
                        consumer,
                        self.delta_topic,
                        delta_partition,
                        after.delta + 1,
                        keep=lambda msg: msg.key() == key,
                        limit=limit,
                        timeout=START_TIMEOUT_SECONDS,
                    ).records
            finally:
                consumer.close()
            return scan.records, deltas, scan.skipped_from is not None

        try:
            records, delta_records, gap = await asyncio.to_thread(read)
        except PipelineError as exc:
            raise InboundRejected(503, f"could not read the stream: {exc}") from exc
        messages = [i for i in (self._decode(m, False) for m in records) if i is not None]
        deltas = [i for i in (self._decode(m, True) for m in delta_records) if i is not None]
        # A delta of an answer that is among the messages is not worth sending.
        answered = {m.stream_id for m in messages if isinstance(m, Outgoing) and m.stream_id}
        items = messages + [d for d in deltas if d.stream_id not in answered]
        items.sort(key=lambda item: item.timestamp_ms)
        return items, gap

    # ------------------------------------------------------------------ the reader

    def start(self, serde: SingleObjectSerde) -> None:
        """Start the live reader on a worker thread (from the running event loop)."""
        self._serde = serde
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._run, name="web-stream-reader", daemon=True)
        self._thread.start()

    async def stop(self) -> None:
        self._stopping.set()
        thread = self._thread
        if thread is not None:
            await asyncio.to_thread(thread.join, 10)
        for streams in list(self._streams.values()):
            for stream in streams:
                with contextlib.suppress(asyncio.QueueFull):
                    stream.queue.put_nowait(None)

    def _run(self) -> None:
        consumer = reader(self._config)
        try:
            while not self._assign_from_the_end(consumer):
                if self._stopping.wait(RETRY_SECONDS):
                    return
            self._failed = None
            self._call(self._started.set)
            while not self._stopping.is_set():
                for msg in consume_available(consumer, 500, 0.2):
                    err = msg.error()
                    if err is not None:
                        if err.code() != KafkaError._PARTITION_EOF:
                            log.warning("reading %s: %s", self.topic, err)
                        continue
                    item = self._decode(msg, msg.topic() == self.delta_topic)
                    if item is not None:
                        self._call(self._dispatch, item)
        finally:
            consumer.close()

    def _assign_from_the_end(self, consumer: Consumer) -> bool:
        """Assign every partition at its current end; False (and why, for 503 answers)
        when that cannot be done yet."""
        try:
            deadline = time.monotonic() + START_TIMEOUT_SECONDS
            count = partition_count(consumer, self.topic)
            starts = self._ends(consumer, self.topic, count, deadline)
            try:
                deltas = partition_count(consumer, self.delta_topic)
            except PipelineError as exc:
                log.warning("web streams carry no previews of answers being written: %s", exc)
                deltas = 0
            starts += self._ends(consumer, self.delta_topic, deltas, deadline)
        except (PipelineError, KafkaException) as exc:
            if self._failed is None:
                log.warning("the web stream reader cannot start yet (retrying): %s", exc)
            self._failed = str(exc)
            return False
        consumer.assign(starts)
        self._call(
            self._dispatched.update, {(tp.topic, tp.partition): tp.offset - 1 for tp in starts}
        )
        self.partitions = count
        self.delta_partitions = deltas
        return True

    @staticmethod
    def _ends(consumer: Consumer, topic: str, count: int, deadline: float) -> list[TopicPartition]:
        return [
            TopicPartition(topic, p, watermarks(consumer, topic, p, deadline)[1])
            for p in range(count)
        ]

    def _call(self, function: Callable[..., Any], *args: Any) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(function, *args)

    def _decode(self, msg: Message, is_delta: bool) -> Item | None:
        try:
            if self._serde is None:
                raise SerdeError("no serde yet")
            return decode_item(self._serde, msg, is_delta)
        except (SerdeError, KeyError, ValueError) as exc:
            self.undecodable += 1
            where = f"{msg.topic()}[{msg.partition()}-{msg.offset()}]"
            log.warning("skipping %s: not an event for the streams: %s", where, exc)
            return None

    def _dispatch(self, item: Item) -> None:
        if isinstance(item, Delta):
            self._dispatched[(self.delta_topic, item.partition)] = item.offset
        else:
            self._dispatched[(self.topic, item.position.partition)] = item.position.offset
        for stream in list(self._streams.get(item.conversation_id, ())):
            try:
                stream.queue.put_nowait(item)
            except asyncio.QueueFull:
                log.warning("a stream of %s fell behind; closing it", item.conversation_id)
                self.close(stream)
                with contextlib.suppress(asyncio.QueueEmpty):
                    stream.queue.get_nowait()
                stream.queue.put_nowait(None)


def _count(counts: dict[str, int], key: str, change: int) -> None:
    """Add ``change`` to ``counts[key]``, dropping keys that reach zero."""
    value = counts.get(key, 0) + change
    if value:
        counts[key] = value
    else:
        counts.pop(key, None)
