"""A web conversation's history for the chat page, read back from Kafka.

When the page opens (or reloads) it asks for the conversation so far: what the user
wrote (``message_received``) and what came back (``web_outgoing``), read from the
conversation's partition of each topic, newest ``gateway.chat_history_max_records``
records of each at most (older ones are left out and ``truncated`` says so), within the
chat token's conversation only. With it comes the stream mark at which the history ends,
so the page's stream resumes right after it: nothing missed in between, nothing twice.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, Message

from pipeline.channels.web.stream_log import (
    DELTA_EVENT,
    STREAM_EVENT,
    StreamMark,
    partition_of,
    read_partition,
    reader,
)
from pipeline.config import Settings
from pipeline.errors import InboundRejected, PipelineError, SerdeError
from pipeline.events.model import to_millis
from pipeline.events.serde import SingleObjectSerde
from pipeline.state.changelog import watermarks

INBOX = "message_received"
READ_TIMEOUT_SECONDS = 15.0


@dataclass(frozen=True, slots=True)
class Said:
    """One message of the conversation: ``user`` or ``bot``."""

    role: str
    text: str
    at: int  # ms since the epoch
    id: str
    stream_id: str | None = None

    def as_json(self) -> dict[str, Any]:
        said: dict[str, Any] = {"role": self.role, "text": self.text, "at": self.at, "id": self.id}
        if self.stream_id is not None:
            said["stream_id"] = self.stream_id
        return said


class ChatHistory:
    """Reads conversations' histories with the gateway's consumer settings."""

    def __init__(self, settings: Settings, client_config: Mapping[str, Any]) -> None:
        self.settings = settings
        self._config = {**settings.consumer_config(), **client_config}
        self.limit = settings.gateway.chat_history_max_records

    async def read(
        self, serde: SingleObjectSerde, conversation_id: str
    ) -> tuple[list[Said], StreamMark, bool]:
        """The conversation's messages, oldest first; the mark after them; whether older
        ones were left out. 503 when Kafka cannot be read."""
        try:
            return await asyncio.to_thread(self._read, serde, conversation_id)
        except PipelineError as exc:
            raise InboundRejected(503, f"could not read the conversation: {exc}") from exc

    def _read(
        self, serde: SingleObjectSerde, conversation_id: str
    ) -> tuple[list[Said], StreamMark, bool]:
        key = conversation_id.encode()
        consumer = reader(self._config)
        try:
            said, truncated = [], False
            for topic in (INBOX, STREAM_EVENT):
                records, partial, end = self._newest(consumer, topic, key)
                said += [s for s in (_said(serde, m, topic) for m in records) if s is not None]
                truncated = truncated or partial
                if topic == STREAM_EVENT:
                    partition, offset = end
            mark = StreamMark(partition, offset, self._delta_end(consumer, conversation_id))
        finally:
            consumer.close()
        said.sort(key=lambda s: s.at)
        return said, mark, truncated

    def _newest(
        self, consumer: Consumer, logical: str, key: bytes
    ) -> tuple[list[Message], bool, tuple[int, int]]:
        topic = self.settings.topic(logical)
        partition = partition_of(consumer, topic, key.decode())
        scan = read_partition(
            consumer,
            topic,
            partition,
            0,
            keep=lambda m: m.key() == key,
            limit=self.limit,
            timeout=READ_TIMEOUT_SECONDS,
        )
        # Records past the retention are not missing; those over the bound are.
        return scan.records, not scan.complete, (partition, scan.next_offset - 1)

    def _delta_end(self, consumer: Consumer, conversation_id: str) -> int | None:
        topic = self.settings.topic(DELTA_EVENT)
        try:
            partition = partition_of(consumer, topic, conversation_id)
        except PipelineError:
            return None  # no previews without the topic
        return watermarks(consumer, topic, partition, _deadline())[1] - 1


def _said(serde: SingleObjectSerde, msg: Message, logical: str) -> Said | None:
    try:
        event = serde.decode(msg.value() or b"")
    except SerdeError:
        return None
    at = to_millis(event.metadata.occurred_at)
    if logical == INBOX:
        return Said("user", str(event["text"]), at, str(event.get("external_id") or event.id))
    stream_id = event.get("stream_id")
    return Said(
        "bot",
        str(event["text"]),
        at,
        str(event["response_id"]),
        None if stream_id is None else str(stream_id),
    )


def _deadline() -> float:
    return time.monotonic() + READ_TIMEOUT_SECONDS
