"""Each gateway replica's reader of ``web_outgoing``, and the streams it feeds.

Every replica reads every partition of the topic itself (assigned, not subscribed: no
consumer group, no commits), from the end as it was when the replica started, on a
worker thread. Each record goes to the streams this replica holds for its conversation;
another replica pushes the same record to the streams it holds. A stream that reconnects
with the position of the last record it got (:class:`Position`) is first given what it
missed, read from Kafka (so any replica can serve it), then the live records after it:
the stream registers for live records before the catch-up reads up to the end, and
skips any live record at or before the last position it sent, so nothing is lost in
between and nothing is sent twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from pipeline.channels.web.stream_log import (
    STREAM_EVENT,
    Position,
    partition_count,
    read_partition,
    reader,
)
from pipeline.config import Settings
from pipeline.errors import InboundRejected, PipelineError, SerdeError
from pipeline.events.serde import SingleObjectSerde
from pipeline.partitioner import partition_for
from pipeline.state.changelog import watermarks

log = logging.getLogger(__name__)

QUEUE_LIMIT = 1000
"""Records waiting for one slow stream; beyond it the stream is closed, and the client's
reconnect (with its last event id) reads them from Kafka instead."""
RECENT_IDS = 64
START_TIMEOUT_SECONDS = 30.0
RETRY_SECONDS = 2.0


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One message for the streams of its conversation."""

    position: Position
    conversation_id: str
    event_id: str
    response_id: str
    text: str
    in_reply_to: str | None
    proactive: bool

    def data(self) -> str:
        """The SSE ``data`` line: JSON, rendered by the page as text."""
        return json.dumps(
            {
                "conversation_id": self.conversation_id,
                "response_id": self.response_id,
                "text": self.text,
                "in_reply_to": self.in_reply_to,
                "proactive": self.proactive,
            },
            ensure_ascii=False,
            separators=(",", ":"),
        )


@dataclass(eq=False)
class Stream:
    """One open stream: its conversation, its queue, what it already sent."""

    tenant: str
    conversation_id: str
    client: str = "unknown"
    queue: asyncio.Queue[Outgoing | None] = field(
        default_factory=lambda: asyncio.Queue(QUEUE_LIMIT)
    )
    last_offset: int = -1
    sent_ids: deque[str] = field(default_factory=lambda: deque(maxlen=RECENT_IDS))

    def fresh(self, item: Outgoing) -> bool:
        """True when ``item`` was not sent on this stream yet; then it counts as sent."""
        if item.position.offset <= self.last_offset or item.event_id in self.sent_ids:
            return False
        self.last_offset = item.position.offset
        self.sent_ids.append(item.event_id)
        return True


class StreamHub:
    """The replica's live reader and its open streams, by conversation."""

    def __init__(self, settings: Settings, client_config: Mapping[str, Any] | None = None) -> None:
        self.settings = settings
        # Logs and errors of the reader's clients (a ClusterConnection's), with the settings.
        self._config = {**settings.consumer_config(), **(client_config or {})}
        self.section = settings.gateway
        self.topic = settings.topic(STREAM_EVENT)
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
        self.undecodable = 0

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
        return partition_for(conversation_id, self.partitions)

    async def catch_up(self, stream: Stream, after: Position) -> tuple[list[Outgoing], bool]:
        """What ``stream``'s conversation got after ``after``, read from Kafka up to the
        end; and whether some could not be read (expired, or over the catch-up bound)."""
        key = stream.conversation_id.encode()
        config = self._config
        limit = self.section.stream_catchup_max_records

        def read() -> tuple[list[Message], bool]:
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
            finally:
                consumer.close()
            return scan.records, scan.skipped_from is not None

        try:
            records, gap = await asyncio.to_thread(read)
        except PipelineError as exc:
            raise InboundRejected(503, f"could not read the stream: {exc}") from exc
        items = [item for item in map(self._decode, records) if item is not None]
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
                for msg in consumer.consume(500, 0.2):
                    err = msg.error()
                    if err is not None:
                        if err.code() != KafkaError._PARTITION_EOF:
                            log.warning("reading %s: %s", self.topic, err)
                        continue
                    item = self._decode(msg)
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
            starts = [
                TopicPartition(self.topic, p, watermarks(consumer, self.topic, p, deadline)[1])
                for p in range(count)
            ]
        except (PipelineError, KafkaException) as exc:
            if self._failed is None:
                log.warning("the web stream reader cannot start yet (retrying): %s", exc)
            self._failed = str(exc)
            return False
        consumer.assign(starts)
        self.partitions = count
        return True

    def _call(self, function: Callable[..., Any], *args: Any) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(function, *args)

    def _decode(self, msg: Message) -> Outgoing | None:
        value = msg.value()
        position = Position(msg.partition() or 0, msg.offset() or 0)
        try:
            if value is None or self._serde is None:
                raise SerdeError("a record without a value")
            event = self._serde.decode(value)
            return Outgoing(
                position,
                event.conversation_id,
                event.metadata.event_id_text,
                str(event["response_id"]),
                str(event["text"]),
                event.get("in_reply_to"),
                bool(event.get("proactive")),
            )
        except (SerdeError, KeyError, ValueError) as exc:
            self.undecodable += 1
            log.warning("skipping %s[%s]: not a web_outgoing event: %s", self.topic, position, exc)
            return None

    def _dispatch(self, item: Outgoing) -> None:
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
