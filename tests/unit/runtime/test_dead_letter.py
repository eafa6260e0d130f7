"""Dead-letter records: the original kept whole, with where it came from and why it failed."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from confluent_kafka import TIMESTAMP_CREATE_TIME, TIMESTAMP_NOT_AVAILABLE, Message

from pipeline.config import bundled_dir
from pipeline.errors import CorruptEventError
from pipeline.events.catalog import DEAD_LETTER, SchemaCatalog
from pipeline.events.serde import CONTENT_TYPE, SingleObjectSerde
from pipeline.runtime.dead_letter import (
    DEAD_LETTER_NAMESPACE,
    Failure,
    dead_letter_id,
    dead_letter_record,
)

CREATED_MS = 1_715_938_212_345
ORIGINAL_VALUE = b"\xc3\x01\x00\x01\x02\x03\x04\x05\x06\x07not avro"
ORIGINAL_HEADERS = [
    ("event-type", b"message_received"),
    ("traceparent", b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
    ("empty", None),
]


@pytest.fixture(scope="module")
def serde() -> SingleObjectSerde:
    return SingleObjectSerde(SchemaCatalog.load(bundled_dir("schemas")))


def message(**overrides: object) -> Message:
    fields: dict[str, object] = {
        "topic": "t-dl.message_received",
        "partition": 5,
        "offset": 81234,
        "key": b"conv-slack-C024BE91L",
        "value": ORIGINAL_VALUE,
        "headers": ORIGINAL_HEADERS,
        "timestamp": (TIMESTAMP_CREATE_TIME, CREATED_MS),
    }
    fields.update(overrides)
    return Message(**fields)


def decode_failure() -> Failure:
    return Failure(
        stage="decode",
        error=CorruptEventError("writer schema fingerprint 0001020304050607 is not known"),
        attempts=0,
        service="echo",
    )


def handler_failure() -> Failure:
    return Failure(
        stage="handler",
        error=TimeoutError("LLM call timed out after 30s"),
        attempts=4,
        service="agent",
        handler="answer",
        event_type="message_received",
        conversation_id="conv-slack-C024BE91L",
    )


def test_stand_in_message_behaves_like_a_consumed_one() -> None:
    msg = message()
    assert (msg.topic(), msg.partition(), msg.offset()) == ("t-dl.message_received", 5, 81234)
    assert msg.headers() == ORIGINAL_HEADERS


def test_dead_letter_keeps_the_original_and_the_reason(serde: SingleObjectSerde) -> None:
    before = datetime.now(UTC) - timedelta(seconds=1)
    value, _ = dead_letter_record(serde, message(), decode_failure())
    event_type, record = serde.decode_record(value)
    assert event_type == DEAD_LETTER
    assert record["source_topic"] == "t-dl.message_received"
    assert record["source_partition"] == 5
    assert record["source_offset"] == 81234
    assert record["source_timestamp"] == datetime.fromtimestamp(CREATED_MS / 1000, UTC)
    assert record["key"] == b"conv-slack-C024BE91L"
    assert record["value"] == ORIGINAL_VALUE
    assert [(h["key"], h["value"]) for h in record["headers"]] == ORIGINAL_HEADERS
    assert record["stage"] == "decode"
    assert record["error_type"] == "CorruptEventError"
    assert record["error_message"] == "writer schema fingerprint 0001020304050607 is not known"
    assert record["attempts"] == 0
    assert record["service"] == "echo"
    assert record["handler"] is None
    assert record["event_type"] is None
    assert record["conversation_id"] is None
    assert before <= record["failed_at"] <= datetime.now(UTC) + timedelta(seconds=1)


def test_handler_failure_names_the_handler(serde: SingleObjectSerde) -> None:
    value, _ = dead_letter_record(serde, message(), handler_failure())
    _, record = serde.decode_record(value)
    assert record["stage"] == "handler"
    assert record["error_type"] == "TimeoutError"
    assert record["attempts"] == 4
    assert record["service"] == "agent"
    assert record["handler"] == "answer"
    assert record["event_type"] == "message_received"
    assert record["conversation_id"] == "conv-slack-C024BE91L"


def test_dead_letter_headers(serde: SingleObjectSerde) -> None:
    _, headers = dead_letter_record(serde, message(), decode_failure())
    by_name = dict(headers)
    assert len(by_name) == len(headers)
    assert by_name["event-type"] == DEAD_LETTER
    assert by_name["content-type"] == CONTENT_TYPE
    assert by_name["dlt-original-topic"] == "t-dl.message_received"
    assert by_name["dlt-original-partition"] == "5"
    assert by_name["dlt-original-offset"] == "81234"
    assert by_name["dlt-exception-fqcn"] == "pipeline.errors.CorruptEventError"
    assert by_name["dlt-exception-message"] == (
        "writer schema fingerprint 0001020304050607 is not known"
    )
    assert by_name["dlt-failure-stage"] == "decode"
    assert by_name["dlt-service"] == "echo"
    assert by_name["event-id"] == dead_letter_id(
        "t-dl.message_received", 5, 81234, "decode", "echo"
    )


def test_dead_letter_id_is_a_uuid5_of_the_source_coordinates_stage_and_service() -> None:
    expected = uuid.uuid5(
        DEAD_LETTER_NAMESPACE, "t-dl.message_received\x1f5\x1f81234\x1fhandler\x1fagent"
    )
    assert dead_letter_id("t-dl.message_received", 5, 81234, "handler", "agent") == str(expected)
    assert uuid.UUID(dead_letter_id("t", 0, 0, "decode", "s")).version == 5


def test_the_same_record_written_again_gets_the_same_id(serde: SingleObjectSerde) -> None:
    """A crash before the source offset commits writes the dead letter again: same id."""
    first = dict(dead_letter_record(serde, message(), handler_failure())[1])
    # The repeat fails anew (another attempt count, another time, another message).
    again = Failure(
        stage="handler",
        error=TimeoutError("LLM call timed out after 31s"),
        attempts=2,
        service="agent",
        handler="answer",
    )
    repeat = dict(dead_letter_record(serde, message(), again)[1])
    assert first["event-id"] == repeat["event-id"]


@pytest.mark.parametrize(
    "other",
    [
        {"topic": "t-dl.other"},
        {"partition": 4},
        {"offset": 81235},
    ],
)
def test_another_record_gets_another_id(serde: SingleObjectSerde, other: dict[str, object]) -> None:
    first = dict(dead_letter_record(serde, message(), handler_failure())[1])
    second = dict(dead_letter_record(serde, message(**other), handler_failure())[1])
    assert first["event-id"] != second["event-id"]


def test_another_stage_or_service_gets_another_id() -> None:
    ids = {
        dead_letter_id("t", 1, 2, "decode", "agent"),
        dead_letter_id("t", 1, 2, "handler", "agent"),
        dead_letter_id("t", 1, 2, "handler", "audit"),
        # The separator keeps fields apart: "t1" + "12" is not "t" + "112".
        dead_letter_id("t1", 12, 2, "handler", "agent"),
        dead_letter_id("t", 112, 2, "handler", "agent"),
    }
    assert len(ids) == 5


def test_builtin_exception_fqcn(serde: SingleObjectSerde) -> None:
    _, headers = dead_letter_record(serde, message(), handler_failure())
    assert dict(headers)["dlt-exception-fqcn"] == "builtins.TimeoutError"


def test_long_messages_are_cut_in_the_header_only(serde: SingleObjectSerde) -> None:
    failure = Failure(stage="handler", error=ValueError("x" * 5000), attempts=1, service="s")
    value, headers = dead_letter_record(serde, message(), failure)
    message_header = dict(headers)["dlt-exception-message"]
    assert isinstance(message_header, str)
    assert len(message_header) == 1000
    assert serde.decode_record(value)[1]["error_message"] == "x" * 5000


def test_an_error_without_message_uses_its_type(serde: SingleObjectSerde) -> None:
    failure = Failure(stage="handler", error=KeyError(), attempts=1, service="s")
    value, headers = dead_letter_record(serde, message(), failure)
    assert serde.decode_record(value)[1]["error_message"] == "KeyError"
    assert dict(headers)["dlt-exception-message"] == "KeyError"


def test_tombstone_without_key_or_timestamp(serde: SingleObjectSerde) -> None:
    msg = message(key=None, value=None, headers=None, timestamp=(TIMESTAMP_NOT_AVAILABLE, -1))
    value, _ = dead_letter_record(serde, msg, decode_failure())
    _, record = serde.decode_record(value)
    assert record["key"] is None
    assert record["value"] is None
    assert record["headers"] == []
    assert record["source_timestamp"] is None


def test_string_key_and_value_are_kept_as_bytes(serde: SingleObjectSerde) -> None:
    msg = message(key="conv-ü", value="plain text body")
    _, record = serde.decode_record(dead_letter_record(serde, msg, decode_failure())[0])
    assert record["key"] == "conv-ü".encode()
    assert record["value"] == b"plain text body"
