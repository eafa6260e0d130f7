"""The schema catalog: loading a folder, readers by type, writers by fingerprint."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from pipeline.config import bundled_dir
from pipeline.errors import SchemaError
from pipeline.events.catalog import (
    DEAD_LETTER,
    SchemaCatalog,
    event_type_of,
    fingerprint,
    type_name,
)

SCHEMAS = bundled_dir("schemas")


@pytest.mark.parametrize(
    ("event_type", "full_name"),
    [
        ("message_received", "pipeline.events.MessageReceived"),
        ("tool_called", "pipeline.events.ToolCalled"),
        ("dead_letter", "pipeline.events.DeadLetter"),
        ("timer_fired", "pipeline.events.TimerFired"),
    ],
)
def test_type_names_map_both_ways(event_type: str, full_name: str) -> None:
    assert type_name(event_type) == full_name
    assert event_type_of(full_name) == event_type


def test_load_knows_every_event_type_and_the_dead_letter() -> None:
    catalog = SchemaCatalog.load(SCHEMAS)
    assert DEAD_LETTER not in catalog.event_types
    assert catalog.reader(DEAD_LETTER).full_name == "pipeline.events.DeadLetter"
    for event_type in catalog.event_types:
        known = catalog.reader(event_type)
        assert known.event_type == event_type
        assert known.full_name == type_name(event_type)
        assert catalog.writer(known.fingerprint) is known


def test_helper_types_are_not_event_types() -> None:
    catalog = SchemaCatalog.load(SCHEMAS)
    for helper in ("address", "attachment", "header", "metadata", "channel"):
        assert helper not in catalog.event_types
        with pytest.raises(SchemaError):
            catalog.reader(helper)


def test_unknown_reader_lists_the_known_types() -> None:
    catalog = SchemaCatalog.load(SCHEMAS)
    with pytest.raises(SchemaError, match="unknown event type 'order_placed'; known: ") as info:
        catalog.reader("order_placed")
    assert "message_received" in str(info.value)


def test_unknown_writer_is_none() -> None:
    assert SchemaCatalog.load(SCHEMAS).writer(b"\x00" * 8) is None


def test_missing_folder_is_a_schema_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(SchemaError, match="does not exist"):
        SchemaCatalog.load(missing)


def test_folder_without_events_is_a_schema_error(tmp_path: Path) -> None:
    shutil.copy(SCHEMAS / "pipeline.events.Channel.avsc", tmp_path)
    with pytest.raises(SchemaError, match="no event schemas"):
        SchemaCatalog.load(tmp_path)


def test_unresolvable_reference_names_the_file(tmp_path: Path) -> None:
    schema = {
        "type": "record",
        "name": "Orphan",
        "namespace": "pipeline.events",
        "doc": "Refers to a type that does not exist.",
        "fields": [{"name": "metadata", "type": "pipeline.events.Missing", "doc": "x"}],
    }
    (tmp_path / "pipeline.events.Orphan.avsc").write_text(json.dumps(schema))
    with pytest.raises(SchemaError, match="Orphan"):
        SchemaCatalog.load(tmp_path)


def test_invalid_schema_is_a_schema_error() -> None:
    with pytest.raises(SchemaError, match=r"invalid schema 'pipeline\.events\.Bad'"):
        SchemaCatalog([{"type": "record", "name": "pipeline.events.Bad", "fields": "none"}])


def _v2_tool_called() -> dict[str, Any]:
    schema = json.loads((SCHEMAS / "pipeline.events.ToolCalled.avsc").read_text())
    schema["fields"][0]["type"] = json.loads(
        (SCHEMAS / "pipeline.events.Metadata.avsc").read_text()
    )
    schema["fields"].append(
        {"name": "priority", "type": "int", "default": 0, "doc": "Scheduling priority."}
    )
    return schema


def test_add_writer_knows_another_version_without_changing_the_reader() -> None:
    catalog = SchemaCatalog.load(SCHEMAS)
    reader_before = catalog.reader("tool_called")
    fp = catalog.add_writer(_v2_tool_called())
    assert fp == fingerprint(_v2_tool_called())
    assert fp != reader_before.fingerprint
    writer = catalog.writer(fp)
    assert writer is not None
    assert writer.event_type == "tool_called"
    assert catalog.reader("tool_called") is reader_before
    assert catalog.writer(reader_before.fingerprint) is reader_before


def test_add_writer_of_an_unknown_type_is_refused() -> None:
    schema = {
        "type": "record",
        "name": "pipeline.events.OrderPlaced",
        "fields": [{"name": "order_id", "type": "string"}],
    }
    with pytest.raises(SchemaError, match="OrderPlaced is not a known event type"):
        SchemaCatalog.load(SCHEMAS).add_writer(schema)


def test_load_with_extra_writer_files(tmp_path: Path) -> None:
    extra = tmp_path / "pipeline.events.ToolCalled.v2.avsc"
    extra.write_text(json.dumps(_v2_tool_called()))
    catalog = SchemaCatalog.load(SCHEMAS, extra_writers=[extra])
    writer = catalog.writer(fingerprint(_v2_tool_called()))
    assert writer is not None
    assert writer.event_type == "tool_called"
    assert catalog.reader("tool_called").fingerprint != writer.fingerprint


def test_fingerprint_ignores_docs_and_layout() -> None:
    schema = _v2_tool_called()
    undocumented = json.loads(json.dumps(schema))
    for f in undocumented["fields"]:
        f.pop("doc", None)
    undocumented.pop("doc")
    assert fingerprint(schema) == fingerprint(undocumented)


def test_fingerprint_changes_with_a_field_type() -> None:
    schema = _v2_tool_called()
    changed = json.loads(json.dumps(schema))
    changed["fields"][-1]["type"] = "long"
    assert fingerprint(schema) != fingerprint(changed)
