"""Kafka record headers the pipeline writes and reads."""

from __future__ import annotations

from pipeline.events.serde import CONTENT_TYPE as AVRO_SINGLE_OBJECT
from pipeline.runtime.ports import Record

EVENT_TYPE = "event-type"
EVENT_ID = "event-id"
CONTENT_TYPE = "content-type"
TRACEPARENT = "traceparent"

Header = tuple[str, str | bytes | None]


def headers_of(msg: Record) -> list[tuple[str, bytes | None]]:
    """A consumed record's headers as (name, bytes) pairs, in order."""
    raw = msg.headers() or []
    pairs = raw.items() if isinstance(raw, dict) else raw
    return [(k, v.encode() if isinstance(v, str) else v) for k, v in pairs]


def header(msg: Record, name: str) -> bytes | None:
    """The first value of one header, or None (read once per record: no list is built)."""
    raw = msg.headers()
    if not raw:
        return None
    for key, value in raw.items() if isinstance(raw, dict) else raw:
        if key == name:
            return value.encode() if isinstance(value, str) else value
    return None


def event_headers(
    event_type: str, event_id: str, traceparent: str, content_type: str = AVRO_SINGLE_OBJECT
) -> tuple[Header, ...]:
    """Headers of a produced event (``event_id`` in its text form; the serde's content type)."""
    return (
        (EVENT_TYPE, event_type),
        (EVENT_ID, event_id),
        (CONTENT_TYPE, content_type),
        (TRACEPARENT, traceparent),
    )
