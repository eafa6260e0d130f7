"""Event bodies as JSON: every problem at once, by field path; examples; field docs."""

from __future__ import annotations

from typing import Any

import fastavro
import pytest

from pipeline.config import bundled_dir
from pipeline.events.catalog import SchemaCatalog
from pipeline.events.json_body import body_problems, describe_fields, example_body, to_datum

CATALOG = SchemaCatalog.load(bundled_dir("schemas"))

KITCHEN_SINK = fastavro.parse_schema(
    {
        "type": "record",
        "name": "acme.Sink",
        "fields": [
            {"name": "metadata", "type": "string"},
            {"name": "count", "type": "int"},
            {"name": "ratio", "type": "double"},
            {"name": "flag", "type": "boolean"},
            {"name": "id", "type": {"type": "string", "logicalType": "uuid"}},
            {"name": "raw", "type": "bytes"},
            {"name": "either", "type": ["null", "long", "string"], "default": None},
            {"name": "tags", "type": {"type": "map", "values": "int"}, "default": {}},
            {"name": "at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        ],
    }
)


def test_a_valid_body_has_no_problems_and_becomes_a_datum() -> None:
    body: dict[str, Any] = {
        "count": 3,
        "ratio": 1,
        "flag": True,
        "id": "6f1c2a9e-1f5b-4a8e-9c1e-2b3c4d5e6f70",
        "raw": "\u00ff\u0000",
        "either": "x",
        "tags": {"a": 1},
        "at": 1_700_000_000_000,
    }
    assert body_problems(KITCHEN_SINK, body) == []
    assert to_datum(KITCHEN_SINK, body)["raw"] == b"\xff\x00"


def test_every_problem_is_named_by_its_path() -> None:
    body = {
        "count": 2**31,
        "ratio": "1.5",
        "flag": 1,
        "id": "not-a-uuid",
        "raw": "\u0100",
        "either": [1],
        "tags": {"a": "one"},
    }
    assert body_problems(KITCHEN_SINK, body) == [
        "count: 2147483648 is out of range for int",
        "ratio: expected double, got a string ('1.5')",
        "flag: expected boolean, got a number (1)",
        "id: 'not-a-uuid' is not a UUID",
        "raw: bytes as text take code points 0-255 only",
        "either: an array matches none of null | long | string",
        "tags.a: expected int, got a string ('one')",
        "at: missing (required, timestamp-millis (epoch milliseconds))",
    ]
    with pytest.raises(ValueError, match="count: 2147483648 is out of range"):
        to_datum(KITCHEN_SINK, body)


def test_null_for_a_required_record_says_so() -> None:
    schema = CATALOG.reader("response_ready").parsed
    body = example_body(schema)
    body["reply_to"] = None
    assert body_problems(schema, body) == ["reply_to: expected an object, got null"]


@pytest.mark.parametrize("event_type", CATALOG.event_types)
def test_examples_validate_with_fastavro(event_type: str) -> None:
    schema = CATALOG.reader(event_type).parsed
    body = example_body(schema)
    assert body_problems(schema, body) == []
    record = to_datum(schema, body)
    record["metadata"] = {
        "event_id": "6f1c2a9e-1f5b-4a8e-9c1e-2b3c4d5e6f70",
        "event_type": event_type,
        "conversation_id": "c",
        "tenant_id": "t",
        "correlation_id": "6f1c2a9e-1f5b-4a8e-9c1e-2b3c4d5e6f70",
        "causation_id": None,
        "occurred_at": 0,
        "producer": "test",
    }
    assert fastavro.validate(record, schema, raise_errors=True)


def test_describe_fields_reaches_into_arrays_of_records() -> None:
    fields = {f.path: f for f in describe_fields(CATALOG.reader("message_received").parsed)}
    assert fields["attachments"].type == "array of record Attachment"
    assert fields["attachments"].default == "[]"
    assert fields["attachments[].url"].default is None
    assert fields["attachments[].url"].doc == "Where the file can be fetched."
    assert fields["reply_to.channel"].type.startswith("enum Channel (web, slack")
    assert "metadata" not in fields
