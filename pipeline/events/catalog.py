"""The schemas a process knows: the reader schema of each type and every known writer version.

Schema files live in folders, one named type per file, named ``<namespace>.<Name>.avsc``
so that references between them resolve. The bundled folder comes first; extra folders
add a project's own types, which may refer to the bundled ones (``pipeline.events.Metadata``).
Each file is parsed once, when the catalog loads.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import fastavro
import fastavro.schema
from fastavro.repository.base import AbstractSchemaRepository, SchemaRepositoryError

from pipeline.errors import SchemaError
from pipeline.file_cache import FolderCache, folder_signature

if TYPE_CHECKING:
    from pipeline.config import Settings

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
        self._files: dict[str, Path] = {}
        for schema in schemas:
            known = self._parse(schema)
            self._readers[known.event_type] = known
            self._writers[known.fingerprint] = known

    @classmethod
    def load(
        cls,
        folder: Path,
        extra_writers: Iterable[Path] = (),
        *,
        extra_folders: Iterable[Path] = (),
    ) -> SchemaCatalog:
        """Every record schema in ``folder`` that has a ``metadata`` field is an event type.

        ``extra_writers`` names further files (older or newer versions) that are known as
        writer schemas only, so records written with them can be read.

        ``extra_folders`` add their own types next to ``folder``'s: every ``*.avsc`` file,
        in any namespace, named after the type it defines, and free to refer to the named
        types of every folder. A name defined twice, or two event types that map to the same
        event type name (``acme.OrderPlaced`` and ``shop.OrderPlaced``), is a SchemaError
        naming both files.
        """
        files = _schema_files(folder, tuple(extra_folders))
        repository = _FileRepository(files)
        loaded: dict[str, tuple[Path, dict[str, Any]]] = {}
        for full_name, path in files.items():
            schema = _load_file(path, repository)
            if not (_is_event(schema) or schema.get("name") == type_name(DEAD_LETTER)):
                continue
            event_type = event_type_of(full_name)
            if event_type in loaded:
                raise SchemaError(
                    f"event type {event_type!r} is defined twice: by {loaded[event_type][0]} "
                    f"and by {path}; rename one of the types"
                )
            loaded[event_type] = (path, schema)
        if not loaded:
            raise SchemaError(f"no event schemas in {folder}")
        catalog = cls(schema for _, schema in loaded.values())
        catalog._files = {event_type: path for event_type, (path, _) in loaded.items()}
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

    def source(self, event_type: str) -> Path | None:
        """The file an event type's reader schema was loaded from (None if built in memory)."""
        self.reader(event_type)
        return self._files.get(event_type)

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


def load_settings_catalog(settings: Settings) -> SchemaCatalog:
    """The catalog of ``settings``: its schemas folder plus ``extra_schema_dirs``.

    Read again only when a file of those folders changed: a catalog is not changed once
    loaded, so every service of a process (an evaluation starts hundreds) shares one."""
    folders = (settings.resource_dir("schemas"), *settings.extra_schema_dirs)
    return _LOADED.get(
        folder_signature(folders, ("*.avsc",)),
        lambda: SchemaCatalog.load(
            settings.resource_dir("schemas"), extra_folders=settings.extra_schema_dirs
        ),
    )


_LOADED: FolderCache[SchemaCatalog] = FolderCache()


def load_named_schema(settings: Settings, full_name: str) -> dict[str, Any]:
    """One named schema of ``settings``' schema folders (event or not), references expanded."""
    files = _schema_files(settings.resource_dir("schemas"), settings.extra_schema_dirs)
    if full_name not in files:
        raise SchemaError(f"no schema {full_name} ({full_name}.avsc) in the schema folders")
    return _load_file(files[full_name], _FileRepository(files))


def _schema_files(folder: Path, extra_folders: tuple[Path, ...]) -> dict[str, Path]:
    """Full name -> file, over every folder; a name in two files is an error naming both."""
    files: dict[str, Path] = {}
    for where, pattern in [(folder, f"{NAMESPACE}.*.avsc")] + [
        (f, "*.avsc") for f in extra_folders
    ]:
        if not where.is_dir():
            raise SchemaError(f"schema folder {where} does not exist")
        for path in sorted(where.glob(pattern)):
            full_name = path.name.removesuffix(".avsc")
            if full_name in files:
                raise SchemaError(
                    f"schema {full_name} is defined twice: in {files[full_name]} and in {path}; "
                    "an extra folder adds types, it cannot replace a bundled one"
                )
            files[full_name] = path
    return files


class _FileRepository(AbstractSchemaRepository):
    """fastavro's view of the schema files: a referenced name is looked up in every folder."""

    def __init__(self, files: Mapping[str, Path]) -> None:
        self._files = files

    def load(self, name: str) -> dict[str, Any]:
        path = self._files.get(name)
        if path is None:
            raise SchemaRepositoryError(f"no file {name}.avsc in the schema folders")
        try:
            loaded: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise SchemaRepositoryError(f"cannot read {path}: {exc}") from exc
        return loaded


def _load_file(path: Path, repository: _FileRepository | None = None) -> dict[str, Any]:
    """A schema file with every referenced named type expanded inline."""
    try:
        if repository is None:
            schema = fastavro.schema.load_schema(str(path), _write_hint=False)
        else:
            name = path.name.removesuffix(".avsc")
            schema = fastavro.schema.load_schema(name, repo=repository, _write_hint=False)
    except Exception as exc:  # fastavro raises parse, lookup and repository errors
        cause = exc.__cause__ or exc
        raise SchemaError(f"cannot load {path.name}: {cause}") from exc
    if not isinstance(schema, dict):
        raise SchemaError(f"{path.name} must hold one named schema")
    if repository is not None and schema.get("name") != path.name.removesuffix(".avsc"):
        raise SchemaError(
            f"{path} defines {schema.get('name')!r}: name the file after the type's full "
            f"name ({schema.get('name')}.avsc) so that references to it resolve"
        )
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


def parse_known(schema: Mapping[str, Any]) -> KnownSchema:
    """One schema (a dict, every named type inline) parsed as the catalog parses its own."""
    return SchemaCatalog._parse(schema)


def schema_text(known: KnownSchema) -> str:
    """The schema as JSON text, every named type inline (what a registry stores)."""
    return json.dumps(_plain(known.parsed), separators=(",", ":"))


def load_expanded(folder: Path, extra_folders: Iterable[Path] = ()) -> dict[str, dict[str, Any]]:
    """Every schema file of the folders by full name, references expanded inline.

    Unlike :meth:`SchemaCatalog.load` this keeps every named type, not only event types,
    so that two versions of a folder can be compared type by type.
    """
    files = _schema_files(folder, tuple(extra_folders))
    repository = _FileRepository(files)
    return {name: _load_file(path, repository) for name, path in files.items()}
