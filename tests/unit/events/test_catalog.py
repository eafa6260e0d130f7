"""The schema catalog: loading a folder, readers by type, writers by fingerprint."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from pipeline.config import Settings, bundled_dir
from pipeline.errors import SchemaError
from pipeline.events.catalog import (
    DEAD_LETTER,
    SchemaCatalog,
    event_type_of,
    fingerprint,
    load_settings_catalog,
    type_name,
)
from pipeline.events.model import Event, Metadata
from pipeline.events.serde import SingleObjectSerde
from tests.user_events import EVENT_TYPE, FULL_NAME, ORDER_PLACED, order_body, write_user_events

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


def test_extra_folder_adds_an_event_type_next_to_the_bundled_ones(tmp_path: Path) -> None:
    schemas, _ = write_user_events(tmp_path)
    catalog = SchemaCatalog.load(SCHEMAS, extra_folders=[schemas])
    assert set(SchemaCatalog.load(SCHEMAS).event_types) < set(catalog.event_types)
    known = catalog.reader(EVENT_TYPE)
    assert known.full_name == FULL_NAME
    assert catalog.source(EVENT_TYPE) == schemas / f"{FULL_NAME}.avsc"
    assert catalog.source("message_received") == SCHEMAS / "pipeline.events.MessageReceived.avsc"
    serde = SingleObjectSerde(catalog)
    event = Event(Metadata.new(EVENT_TYPE, "conv-1", tenant_id="t", producer="test"), order_body())
    decoded = serde.decode(serde.encode(event))
    assert decoded.type == EVENT_TYPE
    assert decoded["ship_to"]["channel"] == "web"


def test_settings_catalog_reads_the_extra_schema_dirs(tmp_path: Path) -> None:
    schemas, _ = write_user_events(tmp_path)
    assert EVENT_TYPE not in load_settings_catalog(Settings()).event_types
    assert EVENT_TYPE in load_settings_catalog(Settings(extra_schema_dirs=[schemas])).event_types


def test_a_name_in_two_folders_names_both_files(tmp_path: Path) -> None:
    extra = tmp_path / "mine"
    extra.mkdir()
    shutil.copy(SCHEMAS / "pipeline.events.ToolCalled.avsc", extra)
    with pytest.raises(SchemaError, match="defined twice") as info:
        SchemaCatalog.load(SCHEMAS, extra_folders=[extra])
    assert str(SCHEMAS / "pipeline.events.ToolCalled.avsc") in str(info.value)
    assert str(extra / "pipeline.events.ToolCalled.avsc") in str(info.value)


def test_two_types_with_one_event_type_name_name_both_files(tmp_path: Path) -> None:
    first, _ = write_user_events(tmp_path / "a")
    second, _ = write_user_events(tmp_path / "b")
    renamed = second / "billing.OrderPlaced.avsc"
    (second / f"{FULL_NAME}.avsc").rename(renamed)
    renamed.write_text(json.dumps({**ORDER_PLACED, "namespace": "billing"}))
    with pytest.raises(SchemaError, match="event type 'order_placed' is defined twice") as info:
        SchemaCatalog.load(SCHEMAS, extra_folders=[first, second])
    assert str(first / f"{FULL_NAME}.avsc") in str(info.value)
    assert str(renamed) in str(info.value)


def test_a_file_not_named_after_its_type_is_refused(tmp_path: Path) -> None:
    schemas, _ = write_user_events(tmp_path)
    (schemas / f"{FULL_NAME}.avsc").rename(schemas / "order.avsc")
    with pytest.raises(SchemaError, match=r"name the file after .*acme\.shop\.OrderPlaced\.avsc"):
        SchemaCatalog.load(SCHEMAS, extra_folders=[schemas])


def test_a_missing_extra_folder_is_a_schema_error(tmp_path: Path) -> None:
    with pytest.raises(SchemaError, match="nope does not exist"):
        SchemaCatalog.load(SCHEMAS, extra_folders=[tmp_path / "nope"])


def test_an_unresolvable_reference_in_an_extra_folder_names_the_type(tmp_path: Path) -> None:
    schemas, _ = write_user_events(tmp_path)
    broken = json.loads(json.dumps(ORDER_PLACED))
    broken["fields"][4]["type"] = "pipeline.events.Adress"
    (schemas / f"{FULL_NAME}.avsc").write_text(json.dumps(broken))
    with pytest.raises(SchemaError, match=r"pipeline\.events\.Adress"):
        SchemaCatalog.load(SCHEMAS, extra_folders=[schemas])
