"""Single-object encoding: round trips of every event type, framing, and the typed errors."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from pipeline.config import bundled_dir
from pipeline.errors import (
    CorruptEventError,
    EventValidationError,
    SchemaError,
    SerdeError,
    UnknownSchemaError,
)
from pipeline.events.catalog import DEAD_LETTER, SchemaCatalog
from pipeline.events.model import Event, Metadata
from pipeline.events.serde import CONTENT_TYPE, HEADER_SIZE, MAGIC, SingleObjectSerde

SCHEMAS = bundled_dir("schemas")
OCCURRED = datetime(2024, 5, 17, 9, 30, 12, 345000, tzinfo=UTC)
LATER = datetime(2024, 5, 17, 9, 45, 0, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def serde() -> SingleObjectSerde:
    return SingleObjectSerde(SchemaCatalog.load(SCHEMAS))


def metadata(event_type: str, **overrides: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "event_id": uuid.UUID("3f2a5a52-8c1e-4d5e-9f1a-0c4b5d6e7f80"),
        "event_type": event_type,
        "conversation_id": "conv-web-42",
        "tenant_id": "acme",
        "correlation_id": uuid.UUID("11111111-2222-4333-8444-555555555555"),
        "causation_id": uuid.UUID("66666666-7777-4888-9999-aaaaaaaaaaaa"),
        "occurred_at": OCCURRED,
        "producer": "gateway-web",
    }
    record.update(overrides)
    return record


ADDRESS = {"channel": "slack", "address": "C024BE91L", "thread_id": "1715938212.000200"}

FIELDS: dict[str, dict[str, Any]] = {
    "message_received": {
        "channel": "slack",
        "sender_id": "U12345",
        "sender_name": "Ada Lovelace",
        "text": "Where is my order #1234?",
        "reply_to": ADDRESS,
        "external_id": "Ev0PV52K21",
        "attachments": [
            {
                "url": "https://files.example.com/receipt.pdf",
                "content_type": "application/pdf",
                "name": "receipt.pdf",
                "size_bytes": 48213,
            }
        ],
        "attributes": {"team_id": "T0001"},
    },
    "tool_called": {
        "call_id": "call-7",
        "tool": "order_lookup",
        "arguments_json": '{"order_id": "1234"}',
        "timeout_ms": 5000,
        "depth": 1,
        "agent_version": "1.4.0",
    },
    "tool_result": {
        "call_id": "call-7",
        "tool": "order_lookup",
        "status": "ok",
        "result_json": '{"status": "shipped"}',
        "error": None,
        "duration_ms": 231,
    },
    "response_ready": {
        "reply_to": ADDRESS,
        "text": "Your order #1234 shipped yesterday.",
        "in_reply_to": "Ev0PV52K21",
        "proactive": False,
        "ingress_at": OCCURRED,
        "stream_id": uuid.UUID("7d1f0c2e-5b3a-4c6d-9e8f-1a2b3c4d5e6f"),
        "agent_version": "1.4.0",
    },
    "response_delta": {
        "stream_id": uuid.UUID("7d1f0c2e-5b3a-4c6d-9e8f-1a2b3c4d5e6f"),
        "sequence": 3,
        "text": " shipped yester",
        "interrupted": False,
        "reply_to": ADDRESS,
        "ingress_at": OCCURRED,
        "agent_version": "1.4.0",
    },
    "history_summarized": {
        "summary": "Summary of the earlier conversation:\n- user: my order is #1234",
        "folded_messages": 12,
        "folded_tokens": 3400,
        "budget_tokens": 120000,
        "agent_version": "1.4.0",
    },
    "delivery_status": {
        "response_id": uuid.UUID("0b7e6a4c-1f2d-4e3a-8b9c-0d1e2f3a4b5c"),
        "channel": "whatsapp",
        "state": "retrying",
        "attempt": 2,
        "http_status": 429,
        "provider_message_id": None,
        "error": "rate limited",
        "next_attempt_at": LATER,
    },
    "webhook_received": {
        "source": "zendesk",
        "event_name": "ticket.resolved",
        "payload_json": '{"ticket": 981}',
        "external_id": "zd-delivery-5",
    },
    "context_updated": {
        "source": "zendesk",
        "facts": {"ticket_981": "resolved"},
        "proactive_message": "Your ticket was resolved.",
    },
    "timer_requested": {
        "timer_id": "follow-up-conv-web-42",
        "action": "schedule",
        "due_at": LATER,
        "purpose": "follow_up",
        "payload_json": '{"nudge": 1}',
        "agent_version": "1.4.0",
    },
    "timer_fired": {
        "timer_id": "follow-up-conv-web-42",
        "purpose": "follow_up",
        "due_at": LATER,
        "payload_json": '{"nudge": 1}',
    },
    "handoff_requested": {
        "requested_by": "user",
        "reason": "the user asked for a person ('real person')",
        "operator_id": None,
        "user_text": "I want a real person",
        "agent_version": "1.4.0",
    },
    "operator_message": {"operator_id": "op-ada", "text": "Hi, Ada here. Let me check."},
    "handoff_released": {"operator_id": "op-ada", "note": "Refund issued; ticket closed."},
    "approval_requested": {
        "approval_id": "approval_0123456789abcdef01234567",
        "call_id": "call_42",
        "tool": "refund",
        "arguments_json": '{"order": "1234", "amount": 20}',
        "reason": "The user asked for a refund.",
        "expires_at": LATER,
        "agent_version": "1.4.0",
    },
    "approval_decided": {
        "approval_id": "approval_0123456789abcdef01234567",
        "decision": "approved",
        "operator_id": "op-ada",
        "arguments_json": '{"order": "1234", "amount": 15}',
        "note": None,
        "internal_reason": "the amount was checked with the customer",
    },
    "operator_action_handled": {
        "action": "handoff_released",
        "operator_id": "op-ada",
        "outcome": "ignored",
        "reason": "no person has this conversation",
        "agent_version": "1.2.3",
    },
    "tool_outcome_decided": {
        "call_id": "call_42",
        "tool": "refund",
        "outcome": "done",
        "operator_id": "op-ada",
        "result_json": '{"refund_id": "r-77"}',
        "note": "The payment provider shows the refund.",
    },
    "web_outgoing": {
        "response_id": uuid.UUID("5f0c6a34-9d1e-4d55-8f7e-0b1c2d3e4f50"),
        "text": "12 * 7 = 84",
        "in_reply_to": "msg-1",
        "proactive": False,
        "stream_id": None,
    },
}

DEAD_LETTER_RECORD: dict[str, Any] = {
    "source_topic": "message_received",
    "source_partition": 3,
    "source_offset": 1024,
    "source_timestamp": OCCURRED,
    "key": b"conv-web-42",
    "value": b"\xc3\x01garbage",
    "headers": [{"key": "event-type", "value": b"message_received"}, {"key": "x", "value": None}],
    "stage": "decode",
    "error_type": "CorruptEventError",
    "error_message": "body is corrupt",
    "attempts": 0,
    "service": "echo",
    "handler": None,
    "event_type": None,
    "conversation_id": None,
    "failed_at": LATER,
}


def event_record(event_type: str) -> dict[str, Any]:
    return {"metadata": metadata(event_type), **FIELDS[event_type]}


def test_samples_cover_every_event_type(serde: SingleObjectSerde) -> None:
    assert sorted(FIELDS) == serde.catalog.event_types


@pytest.mark.parametrize("event_type", sorted(FIELDS))
def test_every_event_type_round_trips(serde: SingleObjectSerde, event_type: str) -> None:
    record = event_record(event_type)
    decoded_type, decoded = serde.decode_record(serde.encode_record(event_type, record))
    assert decoded_type == event_type
    assert decoded == record


@pytest.mark.parametrize("event_type", sorted(FIELDS))
def test_event_objects_round_trip(serde: SingleObjectSerde, event_type: str) -> None:
    event = Event(Metadata.from_record(metadata(event_type)), FIELDS[event_type])
    decoded = serde.decode(serde.encode(event))
    assert decoded == Event(event.metadata, FIELDS[event_type])
    assert decoded.type == event_type
    assert decoded.conversation_id == "conv-web-42"


def test_external_event_without_causation_round_trips(serde: SingleObjectSerde) -> None:
    meta = Metadata.new("webhook_received", "conv-1", tenant_id="acme", producer="gateway")
    assert meta.causation_id is None
    assert meta.correlation_id == meta.event_id
    decoded = serde.decode(serde.encode(Event(meta, FIELDS["webhook_received"])))
    assert decoded.metadata == meta


def test_dead_letter_round_trips(serde: SingleObjectSerde) -> None:
    data = serde.encode_record(DEAD_LETTER, DEAD_LETTER_RECORD)
    assert serde.decode_record(data) == (DEAD_LETTER, DEAD_LETTER_RECORD)


def test_defaults_fill_omitted_optional_fields(serde: SingleObjectSerde) -> None:
    record = {
        "metadata": metadata("tool_called"),
        "call_id": "c1",
        "tool": "search",
        "arguments_json": "{}",
    }
    _, decoded = serde.decode_record(serde.encode_record("tool_called", record))
    assert decoded["timeout_ms"] == 10000
    assert decoded["depth"] == 0


def test_wire_format_is_marker_then_fingerprint_then_body(serde: SingleObjectSerde) -> None:
    data = serde.encode_record("message_received", event_record("message_received"))
    assert data[:2] == b"\xc3\x01" == MAGIC
    assert HEADER_SIZE == 10
    assert data[2:10] == serde.catalog.reader("message_received").fingerprint
    assert len(data) > HEADER_SIZE


def test_each_type_has_its_own_fingerprint(serde: SingleObjectSerde) -> None:
    types = [*FIELDS, DEAD_LETTER]
    fingerprints = {serde.catalog.reader(t).fingerprint for t in types}
    assert len(fingerprints) == len(types)
    assert all(len(fp) == 8 for fp in fingerprints)


def test_content_type_names_the_encoding() -> None:
    assert CONTENT_TYPE.startswith("application/vnd.apache.avro+binary")
    assert "single-object" in CONTENT_TYPE


def test_wrong_marker_is_corrupt(serde: SingleObjectSerde) -> None:
    data = serde.encode_record("tool_called", event_record("tool_called"))
    with pytest.raises(CorruptEventError, match="C3 01") as info:
        serde.decode_record(b"\x00\x00" + data[2:])
    assert isinstance(info.value, SerdeError)


def test_plain_json_is_corrupt(serde: SingleObjectSerde) -> None:
    with pytest.raises(CorruptEventError, match="single-object"):
        serde.decode_record(b'{"text": "hello world"}')


@pytest.mark.parametrize("length", [0, 1, 2, 9])
def test_shorter_than_the_header_is_corrupt(serde: SingleObjectSerde, length: int) -> None:
    data = serde.encode_record("tool_called", event_record("tool_called"))
    with pytest.raises(CorruptEventError):
        serde.decode_record(data[:length])


def test_truncated_body_is_corrupt(serde: SingleObjectSerde) -> None:
    data = serde.encode_record("message_received", event_record("message_received"))
    with pytest.raises(CorruptEventError, match="MessageReceived") as info:
        serde.decode_record(data[:-5])
    assert isinstance(info.value, SerdeError)


def test_header_without_body_is_corrupt(serde: SingleObjectSerde) -> None:
    data = serde.encode_record("tool_called", event_record("tool_called"))
    with pytest.raises(CorruptEventError):
        serde.decode_record(data[:HEADER_SIZE])


def test_garbage_body_is_corrupt(serde: SingleObjectSerde) -> None:
    data = serde.encode_record("message_received", event_record("message_received"))
    # A huge negative string length in the first field cannot be decoded.
    garbage = data[:HEADER_SIZE] + b"\xff" * 12
    with pytest.raises(CorruptEventError):
        serde.decode_record(garbage)


def test_trailing_bytes_are_corrupt(serde: SingleObjectSerde) -> None:
    data = serde.encode_record("tool_called", event_record("tool_called"))
    with pytest.raises(CorruptEventError, match="3 trailing bytes"):
        serde.decode_record(data + b"abc")


def test_unknown_fingerprint_is_unknown_schema(serde: SingleObjectSerde) -> None:
    data = serde.encode_record("tool_called", event_record("tool_called"))
    forged = MAGIC + bytes(8) + data[HEADER_SIZE:]
    with pytest.raises(UnknownSchemaError, match="0000000000000000") as info:
        serde.decode_record(forged)
    assert isinstance(info.value, SerdeError)
    assert "deploy the newer schema" in str(info.value)


def test_encoding_a_bad_record_is_a_validation_error(serde: SingleObjectSerde) -> None:
    record = event_record("tool_called")
    del record["tool"]
    with pytest.raises(EventValidationError, match="tool"):
        serde.encode_record("tool_called", record)


def test_encoding_a_wrong_type_is_a_validation_error(serde: SingleObjectSerde) -> None:
    record = event_record("delivery_status")
    record["attempt"] = "second"
    with pytest.raises(EventValidationError, match="delivery_status"):
        serde.encode_record("delivery_status", record)


def test_encoding_an_unknown_enum_symbol_is_a_validation_error(serde: SingleObjectSerde) -> None:
    record = event_record("message_received")
    record["channel"] = "carrier_pigeon"
    with pytest.raises(EventValidationError):
        serde.encode_record("message_received", record)


def test_encoding_an_unknown_event_type_names_the_known_ones(serde: SingleObjectSerde) -> None:
    with pytest.raises(SchemaError, match=r"unknown event type 'user_joined'.*message_received"):
        serde.encode_record("user_joined", {})


def test_validate_accepts_a_good_record(serde: SingleObjectSerde) -> None:
    for event_type in FIELDS:
        serde.validate(event_type, event_record(event_type))


def test_validate_names_the_missing_field(serde: SingleObjectSerde) -> None:
    record = event_record("message_received")
    del record["text"]
    with pytest.raises(EventValidationError) as info:
        serde.validate("message_received", record)
    message = str(info.value)
    assert message.startswith("message_received:")
    assert "MessageReceived.text" in message


def test_validate_names_the_badly_typed_nested_field(serde: SingleObjectSerde) -> None:
    record = event_record("response_ready")
    record["reply_to"] = {**ADDRESS, "address": 12}
    with pytest.raises(EventValidationError, match=r"Address\.address"):
        serde.validate("response_ready", record)


def test_decode_rejects_a_record_without_valid_metadata(serde: SingleObjectSerde) -> None:
    # The dead-letter type has no metadata, so it is not an Event.
    data = serde.encode_record(DEAD_LETTER, DEAD_LETTER_RECORD)
    with pytest.raises(CorruptEventError, match="dead_letter has no valid metadata"):
        serde.decode(data)


def test_decode_keeps_metadata_in_wire_form_and_converts_on_access(
    serde: SingleObjectSerde,
) -> None:
    record = event_record("message_received")
    decoded = serde.decode(serde.encode_record("message_received", record))
    assert decoded.metadata.to_record()["event_id"] == str(record["metadata"]["event_id"])
    assert decoded.metadata.occurred_millis == 1715938212345
    assert decoded.metadata.event_id == record["metadata"]["event_id"]
    assert decoded.metadata.causation_id == record["metadata"]["causation_id"]
    assert decoded.metadata.occurred_at == OCCURRED
    assert decoded.metadata == Metadata.from_record(record["metadata"])


def test_decode_record_still_applies_the_logical_types(serde: SingleObjectSerde) -> None:
    record = event_record("message_received")
    _, decoded = serde.decode_record(serde.encode_record("message_received", record))
    assert isinstance(decoded["metadata"]["event_id"], uuid.UUID)
    assert decoded["metadata"]["occurred_at"] == OCCURRED


@pytest.mark.parametrize("field", ["event_id", "correlation_id", "causation_id"])
def test_an_id_that_is_not_a_uuid_is_corrupt(serde: SingleObjectSerde, field: str) -> None:
    # A producer that does not validate can write any string where the schema says uuid.
    record = event_record("message_received")
    record["metadata"] = {**metadata("message_received"), field: "order-1234"}
    data = serde.encode_record("message_received", record)
    with pytest.raises(CorruptEventError, match="order-1234"):
        serde.decode(data)


@pytest.mark.parametrize("event_type", sorted(FIELDS))
def test_events_encode_to_the_same_bytes_as_their_records(
    serde: SingleObjectSerde, event_type: str
) -> None:
    # Events are written with the metadata's logical types skipped (it is in wire form);
    # records with UUIDs and datetimes go through the logical types. Same bytes.
    event = Event(Metadata.from_record(metadata(event_type)), FIELDS[event_type])
    assert serde.encode(event) == serde.encode_record(event_type, event_record(event_type))
