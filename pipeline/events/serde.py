"""Wire format: Avro single-object encoding, as the Avro specification defines it.

    C3 01 | 8-byte little-endian CRC-64-AVRO fingerprint of the writer schema | Avro body

A reader finds the writer schema by fingerprint among the versions it knows and resolves
the body onto its own reader schema, so compatible schema changes roll out without
downtime. No registry is needed.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

import fastavro
import fastavro.schema
from fastavro.validation import validate

from pipeline.errors import ConfigError, CorruptEventError, EventValidationError, UnknownSchemaError
from pipeline.events.catalog import SINGLE_OBJECT_MARKER, KnownSchema, SchemaCatalog, type_name
from pipeline.events.model import Event, metadata_from_wire

MAGIC = SINGLE_OBJECT_MARKER
HEADER_SIZE = len(MAGIC) + 8
CONTENT_TYPE = "application/vnd.apache.avro+binary; encoding=single-object"


class SingleObjectSerde:
    """Encodes and decodes records and events with the schemas of one catalog."""

    content_type = CONTENT_TYPE

    def __init__(self, catalog: SchemaCatalog) -> None:
        self.catalog = catalog
        self._plans: dict[bytes, _Plan] = {}  # by writer fingerprint, made on first sight

    @classmethod
    def for_record(cls, schemas_dir: Path, record_type: str, what: str) -> SingleObjectSerde:
        """A serde of the one record schema ``<record_type>.avsc`` in ``schemas_dir`` (a
        record kept beside the events, such as a catalog entry); ``what`` names it in the
        error when the file cannot be loaded."""
        path = schemas_dir / f"{type_name(record_type)}.avsc"
        try:
            schema = fastavro.schema.load_schema(str(path), _write_hint=False)
        except Exception as exc:  # fastavro raises parse, lookup and repository errors
            raise ConfigError(f"cannot load the {what} schema {path}: {exc}") from exc
        if not isinstance(schema, dict):
            raise ConfigError(f"{path} must hold one record schema")
        return cls(SchemaCatalog([schema]))

    def encode_record(self, event_type: str, record: Mapping[str, Any]) -> bytes:
        schema = self.catalog.reader(event_type)
        return encode_with(schema, record)

    def encode(self, event: Event) -> bytes:
        # Metadata.to_record gives the wire form (id text, millis): the metadata needs no
        # logical-type conversion on the way out.
        metadata = event.metadata
        schema = self.catalog.reader(metadata.event_type)
        return encode_with(schema, {**event.data, "metadata": metadata.to_record()}, lean=True)

    def validate(self, event_type: str, record: Mapping[str, Any]) -> None:
        """Raise EventValidationError, naming the bad field, when the record doesn't fit."""
        schema = self.catalog.reader(event_type)
        try:
            validate(record, schema.parsed, raise_errors=True)
        except Exception as exc:
            raise EventValidationError(f"{event_type}: {exc}") from exc

    def decode_record(self, data: bytes) -> tuple[str, dict[str, Any]]:
        """Bytes -> (event type, record projected onto this reader's schema)."""
        return self._read(data, lean=False)

    def decode(self, data: bytes) -> Event:
        event_type, record = self._read(data, lean=True)
        try:
            # The record is fresh from the reader: its fields become the event's data.
            return Event(metadata_from_wire(record.pop("metadata")), record)
        except (KeyError, TypeError, ValueError) as exc:
            raise CorruptEventError(f"{event_type} has no valid metadata: {exc}") from exc

    def _read(self, data: bytes, *, lean: bool) -> tuple[str, dict[str, Any]]:
        if data[:2] != MAGIC or len(data) < HEADER_SIZE:
            raise CorruptEventError(
                f"not Avro single-object encoded (expected marker C3 01, got {data[:2].hex()!r}, "
                f"{len(data)} bytes)"
            )
        fp = data[2:HEADER_SIZE]
        plan = self._plans.get(fp) or self._plan(fp)
        return read_body(data, HEADER_SIZE, plan, lean=lean)

    def _plan(self, fp: bytes) -> _Plan:
        writer = self.catalog.writer(fp)
        if writer is None:
            raise UnknownSchemaError(
                f"writer schema fingerprint {fp.hex()} is not known to this reader; "
                "deploy the newer schema files before producers use them"
            )
        plan = self._plans[fp] = plan_for(self.catalog, writer)
        return plan


class _Plan(NamedTuple):
    """How to read the records of one writer schema version."""

    event_type: str
    full_name: str
    writer: Any
    writer_lean: Any
    reader: Any  # None when the writer is the reader's own version
    reader_lean: Any


def plan_for(catalog: SchemaCatalog, writer: KnownSchema) -> _Plan:
    """How to read records written with ``writer`` onto ``catalog``'s reader of that type."""
    reader = catalog.reader(writer.event_type)
    same = reader.fingerprint == writer.fingerprint  # then no resolution is needed
    return _Plan(
        writer.event_type,
        writer.full_name,
        writer.parsed,
        writer.lean,
        None if same else reader.parsed,
        None if same else reader.lean,
    )


def read_body(data: bytes, offset: int, plan: _Plan, *, lean: bool) -> tuple[str, dict[str, Any]]:
    """Decode the Avro body of ``data`` that starts at ``offset`` with one reading plan."""
    stream = io.BytesIO(data)
    stream.seek(offset)
    try:
        if lean:
            record = fastavro.schemaless_reader(stream, plan.writer_lean, plan.reader_lean)
        else:
            record = fastavro.schemaless_reader(stream, plan.writer, plan.reader)
    except Exception as exc:
        raise CorruptEventError(f"{plan.full_name} body is corrupt: {exc}") from exc
    if stream.tell() != len(data):
        raise CorruptEventError(
            f"{plan.full_name} body has {len(data) - stream.tell()} trailing bytes"
        )
    if not isinstance(record, dict):
        raise CorruptEventError(f"{plan.full_name} body did not decode to a record")
    return plan.event_type, record


def encode_with(
    schema: KnownSchema,
    record: Mapping[str, Any],
    *,
    lean: bool = False,
    header: bytes | None = None,
) -> bytes:
    """Single-object encode ``record`` with one specific schema version.

    ``lean`` when the record's metadata is in wire form already (``Metadata.to_record``);
    the bytes are the same, the writer skips the metadata's logical types. ``header``
    replaces the single-object header (another framing of the same body).
    """
    out = io.BytesIO()
    out.write(schema.header if header is None else header)
    try:
        fastavro.schemaless_writer(out, schema.lean if lean else schema.parsed, record)
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise EventValidationError(f"{schema.event_type}: {exc}") from exc
    return out.getvalue()
