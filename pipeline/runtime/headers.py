"""Kafka record headers the pipeline writes and reads."""

from __future__ import annotations

from confluent_kafka import Message

from pipeline.events.serde import CONTENT_TYPE as AVRO_SINGLE_OBJECT
from pipeline.observability.tracing import child_traceparent

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


def event_headers(
    event_type: str, event_id: object, parent_traceparent: str | bytes | None
) -> tuple[Header, ...]:
    """Headers of a produced event; its span is a child of the cause's, if any."""
    return (
        (EVENT_TYPE, event_type),
        (EVENT_ID, str(event_id)),
        (CONTENT_TYPE, AVRO_SINGLE_OBJECT),
        (TRACEPARENT, child_traceparent(parent_traceparent)),
    )
