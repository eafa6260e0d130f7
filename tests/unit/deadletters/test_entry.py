"""Dead letters as an operator sees them: ids, decoded entries, the redrive record."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import pytest
from confluent_kafka import TIMESTAMP_CREATE_TIME, Message

from pipeline.config import bundled_dir
from pipeline.deadletters import Redrive, parse_letter_id
from pipeline.deadletters.entry import RedriveCodec, decode_entry
from pipeline.errors import UnknownDeadLetterError
from pipeline.events.catalog import SchemaCatalog
from pipeline.events.model import Event, Metadata
from pipeline.events.serde import SingleObjectSerde
from pipeline.runtime.dead_letter import Failure, dead_letter_id, dead_letter_record

SERDE = SingleObjectSerde(SchemaCatalog.load(bundled_dir("schemas")))
SOURCE = "t-dl.message_received"


def original(text: str = "hello") -> Event:
    metadata = Metadata.new("message_received", "conv-7", tenant_id="t1", producer="gateway")
    reply_to = {"channel": "web", "address": "http://127.0.0.1/cb", "thread_id": None}
    return Event(
        metadata,
        {"channel": "web", "sender_id": "u", "text": text, "reply_to": reply_to},
    )


def letter(value: bytes, failure: Failure, key: bytes = b"conv-7") -> tuple[bytes, list]:
    msg = Message(
        topic=SOURCE,
        partition=2,
        offset=41,
        key=key,
        value=value,
        headers=[("event-type", b"message_received"), ("traceparent", b"00-ab-cd-01")],
        timestamp=(TIMESTAMP_CREATE_TIME, 1_715_938_212_345),
    )
    return dead_letter_record(SERDE, msg, failure)


def own_headers(headers: list) -> tuple[tuple[str, bytes], ...]:
    return tuple((k, v.encode() if isinstance(v, str) else v) for k, v in headers)


@pytest.mark.parametrize(("text", "expected"), [("0:17", (0, 17)), (" 11:0 ", (11, 0))])
def test_a_letter_id_is_partition_and_offset(text: str, expected: tuple[int, int]) -> None:
    assert parse_letter_id(text) == expected


@pytest.mark.parametrize("text", ["", "17", "a:1", "1:-2", "1:2:3", "1.5:2"])
def test_anything_else_is_an_unknown_letter_saying_what_an_id_is(text: str) -> None:
    with pytest.raises(UnknownDeadLetterError, match="ids are <partition>:<offset>"):
        parse_letter_id(text)


def test_a_handler_failure_decodes_with_its_error_source_and_original() -> None:
    event = original()
    failure = Failure(
        "handler",
        RuntimeError("cannot handle hello"),
        3,
        "poisoned",
        handler="respond",
        event_type="message_received",
        conversation_id="conv-7",
    )
    value, headers = letter(SERDE.encode(event), failure)
    entry = decode_entry(SERDE, 1, 9, value, own_headers(headers))

    assert (entry.letter_id, entry.partition, entry.offset) == ("1:9", 1, 9)
    assert entry.dead_letter_id == dead_letter_id(SOURCE, 2, 41, "handler", "poisoned")
    assert (entry.source_topic, entry.source_partition, entry.source_offset) == (SOURCE, 2, 41)
    assert entry.source == f"{SOURCE}[2]@41"
    assert (entry.stage, entry.service, entry.handler, entry.attempts) == (
        "handler",
        "poisoned",
        "respond",
        3,
    )
    assert (entry.error_type, entry.error) == ("RuntimeError", "cannot handle hello")
    assert (entry.event_type, entry.conversation_id) == ("message_received", "conv-7")
    assert entry.key == b"conv-7"
    assert entry.value == SERDE.encode(event)
    assert entry.headers == (("event-type", b"message_received"), ("traceparent", b"00-ab-cd-01"))
    assert entry.source_timestamp == datetime(2024, 5, 17, 9, 30, 12, 345000, tzinfo=UTC)
    assert entry.redriven is None
    assert "RuntimeError: cannot handle hello" in entry.line()
    assert f"{SOURCE}[2]@41" in entry.line()
    shown = json.loads(json.dumps(entry.as_json()))
    assert shown["letter_id"] == "1:9"
    assert shown["redriven"] is None
    assert "redriven          no" in entry.details()


def test_a_decode_failure_takes_type_and_conversation_from_headers_and_key() -> None:
    failure = Failure("decode", ValueError("not avro"), 0, "agent")
    value, headers = letter(b"\x00garbage", failure, key=b"conv-x")
    entry = decode_entry(SERDE, 0, 0, value, own_headers(headers))
    assert (entry.event_type, entry.conversation_id) == ("message_received", "conv-x")
    assert entry.value == b"\x00garbage"
    assert "value             8 bytes" in entry.details()


def test_a_record_that_is_not_a_dead_letter_is_unknown() -> None:
    with pytest.raises(UnknownDeadLetterError, match="0:3 is a message_received record"):
        decode_entry(SERDE, 0, 3, SERDE.encode(original()), ())
    with pytest.raises(UnknownDeadLetterError, match="0:4 is not a dead letter"):
        decode_entry(SERDE, 0, 4, b"junk", ())


def test_the_redrive_record_round_trips_and_is_shown_with_the_letter() -> None:
    codec = RedriveCodec(bundled_dir("schemas"))
    redrive = Redrive(
        dead_letter_id=str(uuid.uuid4()),
        letter_id="1:9",
        operator="op-ada",
        redrive_id=str(uuid.uuid4()),
        redriven_at=datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC),
        target_topic=SOURCE,
        target_partition=2,
        target_offset=77,
    )
    assert codec.decode(codec.encode(redrive)) == redrive
    with pytest.raises(ValueError, match="not a DeadLetterRedriven record"):
        codec.decode(SERDE.encode(original()))

    failure = Failure("decode", ValueError("not avro"), 0, "agent")
    value, headers = letter(b"x", failure)
    entry = decode_entry(SERDE, 1, 9, value, own_headers(headers)).with_redrive(redrive)
    assert "redriven by op-ada" in entry.line()
    assert f"by op-ada at 2026-01-02T03:04:05.678000+00:00 to {SOURCE}[2]@77" in entry.details()
    assert entry.as_json()["redriven"]["target"] == f"{SOURCE}[2]@77"
