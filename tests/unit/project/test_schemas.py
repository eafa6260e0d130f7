"""Conventions every file in schemas/ keeps (names, docs, logical types, event coverage)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pipeline.config import bundled_dir
from pipeline.events.catalog import SchemaCatalog, type_name

SCHEMAS = bundled_dir("schemas")
FILES = sorted(SCHEMAS.glob("*.avsc"))

EVENT_TYPES = [
    "message_received",
    "tool_called",
    "tool_result",
    "response_ready",
    "delivery_status",
    "webhook_received",
    "context_updated",
    "timer_requested",
    "timer_fired",
    "handoff_requested",
    "operator_message",
    "handoff_released",
    "approval_requested",
    "approval_decided",
    "tool_outcome_decided",
    "operator_action_handled",
    "web_outgoing",
    "response_delta",
    "history_summarized",
]
ID_FIELDS = {"event_id", "correlation_id", "causation_id", "response_id", "stream_id"}


def load(path: Path) -> dict[str, Any]:
    schema: dict[str, Any] = json.loads(path.read_text())
    return schema


def records(schema: Any, path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every record schema nested in ``schema`` (inline definitions included)."""
    if isinstance(schema, list):
        for member in schema:
            yield from records(member, path)
    elif isinstance(schema, dict):
        if schema.get("type") == "record":
            name = f"{path}{schema['name']}"
            yield name, schema
            for field in schema["fields"]:
                yield from records(field["type"], f"{name}.{field['name']}.")
        elif isinstance(schema.get("type"), dict | list):
            yield from records(schema["type"], path)
        elif schema.get("type") == "array":
            yield from records(schema["items"], path)
        elif schema.get("type") == "map":
            yield from records(schema["values"], path)


def fields() -> Iterator[tuple[str, dict[str, Any]]]:
    for path in FILES:
        for record_name, record in records(load(path)):
            for field in record["fields"]:
                yield f"{path.name}:{record_name}.{field['name']}", field


def branches(field_type: Any) -> list[Any]:
    """A field's type without the union and without null."""
    members = field_type if isinstance(field_type, list) else [field_type]
    return [m for m in members if m != "null"]


def test_there_are_schema_files() -> None:
    assert len(FILES) >= len(EVENT_TYPES)


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_file_is_named_after_its_full_name(path: Path) -> None:
    schema = load(path)
    assert schema["type"] in {"record", "enum", "fixed"}
    assert path.name == f"{schema['namespace']}.{schema['name']}.avsc"


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_every_type_is_documented(path: Path) -> None:
    doc = load(path).get("doc")
    assert isinstance(doc, str)
    assert doc.strip()


def test_every_field_is_documented() -> None:
    seen = 0
    for name, field in fields():
        seen += 1
        doc = field.get("doc")
        assert isinstance(doc, str) and doc.strip(), f"{name} has no doc"
    assert seen > 50


def test_timestamps_are_timestamp_millis() -> None:
    timestamps = [
        (name, field)
        for name, field in fields()
        if field["name"].endswith("_at") or field["name"].endswith("_timestamp")
    ]
    assert len(timestamps) >= 6
    for name, field in timestamps:
        (kind,) = branches(field["type"])
        assert kind == {"type": "long", "logicalType": "timestamp-millis"}, name


def test_ids_are_uuids() -> None:
    ids = [(name, field) for name, field in fields() if field["name"] in ID_FIELDS]
    assert {field["name"] for _, field in ids} == ID_FIELDS
    for name, field in ids:
        (kind,) = branches(field["type"])
        assert kind == {"type": "string", "logicalType": "uuid"}, name


def test_optional_fields_default_to_null() -> None:
    optional = [(n, f) for n, f in fields() if isinstance(f["type"], list) and "null" in f["type"]]
    assert optional
    for name, field in optional:
        assert field["type"][0] == "null", name
        assert "default" in field, name
        assert field["default"] is None, name


def test_every_event_type_is_in_the_catalog() -> None:
    catalog = SchemaCatalog.load(SCHEMAS)
    assert sorted(EVENT_TYPES) == catalog.event_types
    for event_type in EVENT_TYPES:
        assert (SCHEMAS / f"{type_name(event_type)}.avsc").is_file()


@pytest.mark.parametrize("event_type", EVENT_TYPES)
def test_every_event_starts_with_metadata(event_type: str) -> None:
    schema = load(SCHEMAS / f"{type_name(event_type)}.avsc")
    first = schema["fields"][0]
    assert first["name"] == "metadata"
    assert first["type"] == "pipeline.events.Metadata"


def test_channels_include_the_supported_ones() -> None:
    channel = load(SCHEMAS / "pipeline.events.Channel.avsc")
    assert channel["type"] == "enum"
    assert {"web", "slack", "whatsapp", "email"} <= set(channel["symbols"])


def test_channel_has_a_default_for_newer_symbols() -> None:
    channel = load(SCHEMAS / "pipeline.events.Channel.avsc")
    assert channel["default"] in channel["symbols"]


def test_metadata_fields() -> None:
    metadata = load(SCHEMAS / "pipeline.events.Metadata.avsc")
    names = [field["name"] for field in metadata["fields"]]
    assert {"event_id", "event_type", "conversation_id", "correlation_id", "occurred_at"} <= set(
        names
    )
