"""Schema evolution in both directions, and the wire format checked by independent code.

The independent checks use the Apache ``avro`` package (another Avro implementation) and
a CRC-64-AVRO plus Parsing Canonical Form written here from the Avro specification.
"""

from __future__ import annotations

import copy
import io
import json
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import avro.io
import avro.schema
import fastavro.schema
import pytest

from pipeline.config import bundled_dir
from pipeline.errors import UnknownSchemaError
from pipeline.events.catalog import DEAD_LETTER, SchemaCatalog, fingerprint
from pipeline.events.serde import HEADER_SIZE, MAGIC, SingleObjectSerde, encode_with

SCHEMAS = bundled_dir("schemas")
LOCALE = {
    "name": "locale",
    "type": "string",
    "default": "en",
    "doc": "BCP 47 language tag of the message.",
}


def strip_private(value: Any) -> Any:
    """A schema dict without fastavro's ``__`` bookkeeping keys."""
    if isinstance(value, dict):
        return {k: strip_private(v) for k, v in value.items() if not k.startswith("__")}
    if isinstance(value, list):
        return [strip_private(v) for v in value]
    return value


def v1_schema(event_type: str = "message_received") -> dict[str, Any]:
    """The current (v1) schema of a type, every reference expanded, as a plain dict."""
    catalog = SchemaCatalog.load(SCHEMAS)
    return strip_private(copy.deepcopy(catalog.reader(event_type).parsed))


def v2_message_received() -> dict[str, Any]:
    schema = v1_schema()
    schema["fields"].append(dict(LOCALE))
    return schema


def catalog_with_reader(replacement: dict[str, Any]) -> SchemaCatalog:
    """A catalog whose reader for ``replacement``'s type is ``replacement``."""
    current = SchemaCatalog.load(SCHEMAS)
    types = [*current.event_types, DEAD_LETTER]
    schemas = [strip_private(current.reader(t).parsed) for t in types]
    replaced = [s for s in schemas if s["name"] != replacement["name"]]
    assert len(replaced) == len(schemas) - 1
    return SchemaCatalog([*replaced, replacement])


def message(**overrides: Any) -> dict[str, Any]:
    event_id = uuid.UUID("5c1f7a0e-2b3d-4c5e-8f90-a1b2c3d4e5f6")
    record: dict[str, Any] = {
        "metadata": {
            "event_id": event_id,
            "event_type": "message_received",
            "conversation_id": "conv-email-7",
            "tenant_id": "acme",
            "correlation_id": event_id,
            "causation_id": None,
            "occurred_at": datetime(2024, 6, 1, 12, 0, 0, 250000, tzinfo=UTC),
            "producer": "gateway-email",
        },
        "channel": "email",
        "sender_id": "ada@example.com",
        "sender_name": "Ada",
        "text": "Bonjour, où est ma commande ?",
        "reply_to": {
            "channel": "email",
            "address": "ada@example.com",
            "thread_id": "<CAF=abc@mail.example.com>",
        },
        "external_id": "<CAF=abc@mail.example.com>",
        "attachments": [],
        "attributes": {"subject": "Commande 1234"},
    }
    record.update(overrides)
    return record


# --- evolution --------------------------------------------------------------------------


def test_v2_differs_from_v1_only_by_the_added_field() -> None:
    v1, v2 = v1_schema(), v2_message_received()
    assert [f["name"] for f in v2["fields"]] == [f["name"] for f in v1["fields"]] + ["locale"]


def test_v1_reader_decodes_v2_bytes_as_its_own_view() -> None:
    reader = SchemaCatalog.load(SCHEMAS)
    v2_fp = reader.add_writer(v2_message_received())
    assert v2_fp != reader.reader("message_received").fingerprint

    v2_writer = catalog_with_reader(v2_message_received()).reader("message_received")
    assert v2_writer.fingerprint == v2_fp
    data = encode_with(v2_writer, message(locale="fr"))
    assert data[2:HEADER_SIZE] == v2_fp

    event_type, record = SingleObjectSerde(reader).decode_record(data)
    assert event_type == "message_received"
    assert "locale" not in record
    assert record == message()


def test_v2_reader_decodes_v1_bytes_with_the_default() -> None:
    v1_writer = SchemaCatalog.load(SCHEMAS).reader("message_received")
    data = encode_with(v1_writer, message())

    v2_catalog = catalog_with_reader(v2_message_received())
    assert v2_catalog.add_writer(v1_schema()) == v1_writer.fingerprint
    event_type, record = SingleObjectSerde(v2_catalog).decode_record(data)
    assert event_type == "message_received"
    assert record["locale"] == "en"
    assert {k: v for k, v in record.items() if k != "locale"} == message()


def test_v2_reader_reads_its_own_bytes_with_the_written_value() -> None:
    serde = SingleObjectSerde(catalog_with_reader(v2_message_received()))
    _, record = serde.decode_record(serde.encode_record("message_received", message(locale="de")))
    assert record["locale"] == "de"


def test_reader_without_the_writer_schema_says_what_to_do() -> None:
    v2_writer = catalog_with_reader(v2_message_received()).reader("message_received")
    data = encode_with(v2_writer, message(locale="fr"))
    with pytest.raises(UnknownSchemaError) as info:
        SingleObjectSerde(SchemaCatalog.load(SCHEMAS)).decode_record(data)
    text = str(info.value)
    assert v2_writer.fingerprint.hex() in text
    assert "deploy the newer schema files" in text


def test_v2_reader_without_v1_writer_cannot_read_v1_bytes() -> None:
    data = encode_with(SchemaCatalog.load(SCHEMAS).reader("message_received"), message())
    with pytest.raises(UnknownSchemaError):
        SingleObjectSerde(catalog_with_reader(v2_message_received())).decode_record(data)


def test_new_channel_symbol_reads_as_unknown_in_an_old_reader() -> None:
    v2 = v1_schema()
    channel = next(f for f in v2["fields"] if f["name"] == "channel")
    assert channel["type"]["name"].endswith("Channel")
    channel["type"]["symbols"].insert(-1, "telegram")
    # reply_to's Address refers to the same enum by name once it is defined above.
    writer = catalog_with_reader(v2).reader("message_received")
    data = encode_with(writer, message(channel="telegram"))

    old = SchemaCatalog.load(SCHEMAS)
    old.add_writer(v2)
    _, record = SingleObjectSerde(old).decode_record(data)
    assert record["channel"] == "unknown"
    assert record["reply_to"]["channel"] == "email"


def test_removed_optional_field_reads_as_its_default() -> None:
    v2 = v1_schema()
    v2["fields"] = [f for f in v2["fields"] if f["name"] != "sender_name"]
    writer = catalog_with_reader(v2).reader("message_received")
    record = message()
    del record["sender_name"]
    data = encode_with(writer, record)

    old = SchemaCatalog.load(SCHEMAS)
    old.add_writer(v2)
    _, decoded = SingleObjectSerde(old).decode_record(data)
    assert decoded["sender_name"] is None
    assert decoded["text"] == record["text"]


# --- the Apache avro package as an independent implementation -------------------------


def canonical_form(event_type: str) -> str:
    return fastavro.schema.to_parsing_canonical_form(v1_schema(event_type))


def test_fingerprint_matches_apache_avro_for_every_type() -> None:
    catalog = SchemaCatalog.load(SCHEMAS)
    for event_type in [*catalog.event_types, DEAD_LETTER]:
        pcf = canonical_form(event_type)
        parsed = avro.schema.parse(pcf)
        # Apache avro's canonical form of a canonical form is itself.
        assert parsed.canonical_form == pcf
        assert parsed.fingerprint("CRC-64-AVRO") == catalog.reader(event_type).fingerprint


def test_fingerprint_matches_apache_avro_from_the_schema_files() -> None:
    # Address has no logical types, so avro canonicalises the files' JSON on its own.
    address = json.loads((SCHEMAS / "pipeline.events.Address.avsc").read_text())
    address["fields"][0]["type"] = json.loads(
        (SCHEMAS / "pipeline.events.Channel.avsc").read_text()
    )
    theirs = avro.schema.parse(json.dumps(address)).fingerprint("CRC-64-AVRO")
    assert theirs == fingerprint(address)
    assert theirs == crc64_avro(avro.schema.parse(json.dumps(address)).canonical_form.encode())


def test_apache_avro_fingerprints_the_real_files_differently_where_logical_types_are() -> None:
    """Apache avro (Python) keeps ``{"type": "string"}`` in its canonical form of a logical
    type where the specification reduces it to ``"string"``, so its ``fingerprint()`` of the
    real schemas differs from Java's, fastavro's and ours (docs/events.md says so, and how to
    get the right one). Unwrapping those primitives gives exactly the specification's form.
    """
    catalog = SchemaCatalog.load(SCHEMAS)
    for event_type in [*catalog.event_types, DEAD_LETTER]:
        theirs = avro.schema.parse(json.dumps(v1_schema(event_type)))
        assert theirs.fingerprint("CRC-64-AVRO") != catalog.reader(event_type).fingerprint
        unwrapped = theirs.canonical_form
        for primitive in sorted(PRIMITIVES):
            unwrapped = unwrapped.replace(f'{{"type":"{primitive}"}}', f'"{primitive}"')
        assert unwrapped == canonical_form(event_type)
        # The documentation's way: avro parses the Parsing Canonical Form, then agrees.
        right = avro.schema.parse(canonical_form(event_type)).fingerprint("CRC-64-AVRO")
        assert right == catalog.reader(event_type).fingerprint


def avro_schema_of(event_type: str) -> avro.schema.Schema:
    """The full schema, logical types included, parsed by Apache avro."""
    return avro.schema.parse(json.dumps(v1_schema(event_type)))


def test_apache_avro_decodes_our_body() -> None:
    serde = SingleObjectSerde(SchemaCatalog.load(SCHEMAS))
    record = message()
    data = serde.encode_record("message_received", record)

    decoder = avro.io.BinaryDecoder(io.BytesIO(data[HEADER_SIZE:]))
    decoded = avro.io.DatumReader(avro_schema_of("message_received")).read(decoder)

    meta, theirs = record["metadata"], decoded["metadata"]
    assert theirs["event_id"] == str(meta["event_id"])
    assert theirs["correlation_id"] == str(meta["correlation_id"])
    assert theirs["causation_id"] is None
    assert theirs["occurred_at"] == meta["occurred_at"]
    assert theirs["conversation_id"] == meta["conversation_id"]
    for name in ("channel", "sender_id", "sender_name", "text", "reply_to", "external_id"):
        assert decoded[name] == record[name], name
    assert decoded["attachments"] == []
    assert decoded["attributes"] == record["attributes"]


def test_our_serde_decodes_an_apache_avro_single_object() -> None:
    record = message()
    meta = dict(record["metadata"])
    meta["event_id"] = meta["correlation_id"] = str(meta["event_id"])
    avro_record = {**record, "metadata": meta}

    body = io.BytesIO()
    writer = avro.io.DatumWriter(avro_schema_of("message_received"))
    writer.write(avro_record, avro.io.BinaryEncoder(body))
    fp = avro.schema.parse(canonical_form("message_received")).fingerprint("CRC-64-AVRO")
    data = MAGIC + fp + body.getvalue()

    event_type, decoded = SingleObjectSerde(SchemaCatalog.load(SCHEMAS)).decode_record(data)
    assert event_type == "message_received"
    assert decoded == record


# --- CRC-64-AVRO and Parsing Canonical Form from the specification ---------------------

EMPTY = 0xC15D213AA4D7A795
PRIMITIVES = {"null", "boolean", "int", "long", "float", "double", "bytes", "string"}


def _table() -> list[int]:
    table = []
    for i in range(256):
        fp = i
        for _ in range(8):
            fp = (fp >> 1) ^ (EMPTY & -(fp & 1))
        table.append(fp)
    return table


TABLE = _table()


def crc64_avro(data: bytes) -> bytes:
    """The reference algorithm of the Avro specification, as 8 little-endian bytes."""
    fp = EMPTY
    for byte in data:
        fp = (fp >> 8) ^ TABLE[(fp ^ byte) & 0xFF]
    return fp.to_bytes(8, "little")


def test_crc64_of_empty_input_is_the_seed() -> None:
    assert crc64_avro(b"") == EMPTY.to_bytes(8, "little")


def spec_canonical_form(root: str, folder: Path) -> str:
    """Parsing Canonical Form of a schema file, resolving references among ``folder``'s files.

    Primitives with attributes (logical types) become their simple name, as Java's
    SchemaNormalization writes them.
    """
    files = {p.name.removesuffix(".avsc"): json.loads(p.read_text()) for p in folder.glob("*.avsc")}
    seen: set[str] = set()

    def full(name: str, namespace: str | None) -> str:
        return name if "." in name or not namespace else f"{namespace}.{name}"

    def pcf(schema: Any, namespace: str | None) -> str:
        if isinstance(schema, list):
            return "[" + ",".join(pcf(s, namespace) for s in schema) + "]"
        if isinstance(schema, str):
            if schema in PRIMITIVES:
                return json.dumps(schema)
            name = full(schema, namespace)
            return json.dumps(name) if name in seen else pcf(files[name], None)
        kind = schema["type"]
        if not isinstance(kind, str) or kind in PRIMITIVES:
            return pcf(kind, namespace)
        if kind == "array":
            return '{"type":"array","items":' + pcf(schema["items"], namespace) + "}"
        if kind == "map":
            return '{"type":"map","values":' + pcf(schema["values"], namespace) + "}"
        name = full(schema["name"], schema.get("namespace", namespace))
        if name in seen:
            return json.dumps(name)
        seen.add(name)
        inner = name.rpartition(".")[0] or None
        head = '{"name":' + json.dumps(name) + ',"type":' + json.dumps(kind)
        if kind == "enum":
            return head + ',"symbols":' + json.dumps(schema["symbols"], separators=(",", ":")) + "}"
        if kind == "fixed":
            return head + ',"size":' + str(int(schema["size"])) + "}"
        fields = ",".join(
            '{"name":' + json.dumps(f["name"]) + ',"type":' + pcf(f["type"], inner) + "}"
            for f in schema["fields"]
        )
        return head + ',"fields":[' + fields + "]}"

    return pcf(root, None)


@pytest.mark.parametrize("event_type", ["message_received", "delivery_status", DEAD_LETTER])
def test_fingerprint_matches_the_specification(event_type: str) -> None:
    known = SchemaCatalog.load(SCHEMAS).reader(event_type)
    pcf = spec_canonical_form(known.full_name, SCHEMAS)
    assert pcf == fastavro.schema.to_parsing_canonical_form(known.parsed)
    assert crc64_avro(pcf.encode()) == known.fingerprint
