"""The schemas a process knows: the reader schema of each type and every known writer version.

Schema files live in one folder, one named type per file, named ``<namespace>.<Name>.avsc``
so that references between them resolve. Each file is parsed once, when the catalog loads.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fastavro
import fastavro.schema

from pipeline.errors import SchemaError

NAMESPACE = "pipeline.events"
SINGLE_OBJECT_MARKER = b"\xc3\x01"
METADATA_FIELD = "metadata"
DEAD_LETTER = "dead_letter"


def type_name(event_type: str) -> str:
    """``message_received`` -> ``pipeline.events.MessageReceived``."""
    return f"{NAMESPACE}.{''.join(part.capitalize() for part in event_type.split('_'))}"


def event_type_of(full_name: str) -> str:
    """``pipeline.events.MessageReceived`` -> ``message_received``."""
    short = full_name.rsplit(".", 1)[-1]
    return re.sub(r"(?<!^)(?=[A-Z])", "_", short).lower()


def fingerprint(schema: Any) -> bytes:
    """The 8-byte little-endian CRC-64-AVRO fingerprint of a schema's Parsing Canonical Form."""
    canonical = fastavro.schema.to_parsing_canonical_form(schema)
    return bytes.fromhex(fastavro.schema.fingerprint(canonical, "CRC-64-AVRO"))


@dataclass(frozen=True, slots=True)
class KnownSchema:
    """One parsed schema version, ready for fastavro."""

    full_name: str
    event_type: str
    fingerprint: bytes
    parsed: Any
    # The same schema with the metadata's logical types left out: the event model keeps
    # ids as text and times as millis until they are asked for (see events.model).
    lean: Any
    header: bytes  # what precedes a body in single-object encoding: C3 01, fingerprint


class SchemaCatalog:
    """Reader schemas by event type and writer schemas by fingerprint."""

    def __init__(self, schemas: Iterable[Mapping[str, Any]]) -> None:
        self._readers: dict[str, KnownSchema] = {}
        self._writers: dict[bytes, KnownSchema] = {}
        for schema in schemas:
            known = self._parse(schema)
            self._readers[known.event_type] = known
            self._writers[known.fingerprint] = known

    @classmethod
    def load(cls, folder: Path, extra_writers: Iterable[Path] = ()) -> SchemaCatalog:
        """Every record schema in ``folder`` that has a ``metadata`` field is an event type.

        ``extra_writers`` names further files (older or newer versions) that are known as
        writer schemas only, so records written with them can be read.
        """
        if not folder.is_dir():
            raise SchemaError(f"schema folder {folder} does not exist")
        loaded = []
        for path in sorted(folder.glob(f"{NAMESPACE}.*.avsc")):
            schema = _load_file(path)
            if _is_event(schema) or schema.get("name") == type_name(DEAD_LETTER):
                loaded.append(schema)
        if not loaded:
            raise SchemaError(f"no event schemas in {folder}")
        catalog = cls(loaded)
        for path in extra_writers:
            catalog.add_writer(_load_file(path))
        return catalog

    def add_writer(self, schema: Mapping[str, Any]) -> bytes:
        """Know one more writer version of an existing type; returns its fingerprint."""
        known = self._parse(schema)
        if known.event_type not in self._readers:
            raise SchemaError(f"{known.full_name} is not a known event type")
        self._writers[known.fingerprint] = known
        return known.fingerprint

    def reader(self, event_type: str) -> KnownSchema:
        try:
            return self._readers[event_type]
        except KeyError:
            known = ", ".join(sorted(self._readers))
            raise SchemaError(f"unknown event type {event_type!r}; known: {known}") from None

    def writer(self, fp: bytes) -> KnownSchema | None:
        return self._writers.get(fp)

    @property
    def event_types(self) -> list[str]:
        return sorted(t for t in self._readers if t != DEAD_LETTER)

    @staticmethod
    def _parse(schema: Mapping[str, Any]) -> KnownSchema:
        plain = _plain(schema)
        try:
            parsed = fastavro.parse_schema(plain, named_schemas={})
        except Exception as exc:
            raise SchemaError(f"invalid schema {plain.get('name')!r}: {exc}") from exc
        if not isinstance(parsed, dict):
            raise SchemaError(f"{plain.get('name')!r} must be a named record, enum or fixed")
        full_name = str(parsed["name"])
        lean = fastavro.parse_schema(_lean_metadata(plain), named_schemas={})
        fp = fingerprint(parsed)
        return KnownSchema(
            full_name, event_type_of(full_name), fp, parsed, lean, SINGLE_OBJECT_MARKER + fp
        )


def _load_file(path: Path) -> dict[str, Any]:
    """A schema file with every referenced named type expanded inline."""
    try:
        schema = fastavro.schema.load_schema(str(path), _write_hint=False)
    except Exception as exc:  # fastavro raises parse, lookup and repository errors
        cause = exc.__cause__ or exc
        raise SchemaError(f"cannot load {path.name}: {cause}") from exc
    if not isinstance(schema, dict):
        raise SchemaError(f"{path.name} must hold one named schema")
    return schema


def _is_event(schema: Mapping[str, Any]) -> bool:
    if schema.get("type") != "record":
        return False
    return any(f.get("name") == METADATA_FIELD for f in schema.get("fields", []))


def _lean_metadata(schema: dict[str, Any]) -> dict[str, Any]:
    """A copy whose inline ``metadata`` record has plain types instead of logical ones."""
    lean = copy.deepcopy(schema)
    for field in lean.get("fields", []):
        if field.get("name") == METADATA_FIELD and isinstance(field.get("type"), dict):
            for inner in field["type"].get("fields", []):
                inner["type"] = _without_logical_type(inner["type"])
    return lean


def _without_logical_type(schema: Any) -> Any:
    if isinstance(schema, list):
        return [_without_logical_type(branch) for branch in schema]
    if isinstance(schema, dict) and "logicalType" in schema:
        return schema["type"]  # the metadata's are uuid (string) and timestamp-millis (long)
    return schema


def _plain(schema: Mapping[str, Any]) -> dict[str, Any]:
    """Drop fastavro's private keys so the schema can be parsed again from scratch."""
    result: dict[str, Any] = json.loads(
        json.dumps(schema, default=str),
        object_hook=lambda d: {k: v for k, v in d.items() if not k.startswith("__")},
    )
    return result
