"""Reading and writing the record headers the pipeline uses."""

from __future__ import annotations

from confluent_kafka import Message

from pipeline.runtime.headers import TRACEPARENT, event_headers, header


def test_header_returns_the_first_value_as_bytes() -> None:
    msg = Message(
        topic="t",
        headers=[("event-type", b"x"), (TRACEPARENT, b"first"), (TRACEPARENT, b"second")],
    )
    assert header(msg, TRACEPARENT) == b"first"
    assert header(msg, "event-type") == b"x"
    assert header(msg, "missing") is None


def test_header_of_a_record_without_headers_is_none() -> None:
    assert header(Message(topic="t"), TRACEPARENT) is None


def test_event_headers_name_type_id_encoding_and_trace() -> None:
    headers = dict(event_headers("response_ready", "3f2a5a52-8c1e-4d5e-9f1a-0c4b5d6e7f80", "tp"))
    assert headers == {
        "event-type": "response_ready",
        "event-id": "3f2a5a52-8c1e-4d5e-9f1a-0c4b5d6e7f80",
        "content-type": "application/vnd.apache.avro+binary; encoding=single-object",
        "traceparent": "tp",
    }
