"""What a browser's stream carries: messages (``web_outgoing``) and the deltas of answers
being written (``response_delta``), read from Kafka and turned into server-sent events.

A message is an answer (or any message for the user) that delivery wrote; a delta is
part of an answer while the model writes it. An answer that was previewed names its
stream (``stream_id``): the page replaces the preview with it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from confluent_kafka import Message

from pipeline.channels.web.stream_log import Position
from pipeline.errors import SerdeError
from pipeline.events.serde import SingleObjectSerde


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
    stream_id: str | None = None
    timestamp_ms: int = 0

    def data(self) -> str:
        """The SSE ``data`` line: JSON, rendered by the page as text."""
        return _json(
            {
                "conversation_id": self.conversation_id,
                "response_id": self.response_id,
                "text": self.text,
                "in_reply_to": self.in_reply_to,
                "proactive": self.proactive,
                "stream_id": self.stream_id,
            }
        )


@dataclass(frozen=True, slots=True)
class Delta:
    """Part of an answer being written, for the streams of its conversation."""

    partition: int
    offset: int
    conversation_id: str
    event_id: str
    stream_id: str
    sequence: int
    text: str
    interrupted: bool
    ingress_at: datetime | None = None
    timestamp_ms: int = 0

    def data(self) -> str:
        """The SSE ``data`` line of a ``delta`` event."""
        return _json(
            {
                "conversation_id": self.conversation_id,
                "stream_id": self.stream_id,
                "sequence": self.sequence,
                "text": self.text,
                "interrupted": self.interrupted,
            }
        )


Item = Outgoing | Delta


def decode_item(serde: SingleObjectSerde, msg: Message, is_delta: bool) -> Item:
    """The item a record of ``web_outgoing`` (or, ``is_delta``, of ``response_delta``)
    holds; SerdeError, KeyError or ValueError when it holds none."""
    value = msg.value()
    if value is None:
        raise SerdeError("a record without a value")
    event = serde.decode(value)
    partition, offset = msg.partition() or 0, msg.offset() or 0
    timestamp = msg.timestamp()[1]
    if is_delta:
        return Delta(
            partition,
            offset,
            event.conversation_id,
            event.metadata.event_id_text,
            str(event["stream_id"]),
            int(event["sequence"]),
            str(event["text"]),
            bool(event.get("interrupted")),
            event.get("ingress_at"),
            timestamp,
        )
    stream_id = event.get("stream_id")
    return Outgoing(
        Position(partition, offset),
        event.conversation_id,
        event.metadata.event_id_text,
        str(event["response_id"]),
        str(event["text"]),
        event.get("in_reply_to"),
        bool(event.get("proactive")),
        None if stream_id is None else str(stream_id),
        timestamp,
    )


def _json(value: dict[str, Any]) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
