"""Kafka record headers the pipeline writes and reads."""

from __future__ import annotations

from confluent_kafka import Message

EVENT_TYPE = "event-type"
EVENT_ID = "event-id"
CONTENT_TYPE = "content-type"
TRACEPARENT = "traceparent"

Header = tuple[str, str | bytes | None]


def headers_of(msg: Message) -> list[tuple[str, bytes | None]]:
    """A consumed record's headers as (name, bytes) pairs, in order."""
    raw = msg.headers() or []
    pairs = raw.items() if isinstance(raw, dict) else raw
    return [(k, v.encode() if isinstance(v, str) else v) for k, v in pairs]


def header(msg: Message, name: str) -> bytes | None:
    """The first value of one header, or None."""
    for key, value in headers_of(msg):
        if key == name:
            return value
    return None
