"""An event's body as JSON: its fields described, an example, and every problem with a body.

A body is an event's fields without ``metadata`` (the producer sets that), as a person
writes it for ``pipeline produce``: plain JSON values, a union's value given as is
(``null`` or the value), timestamps as epoch milliseconds, ``bytes`` as text whose code
points are the bytes (as Avro's JSON encoding has them). :func:`body_problems` walks the
whole body against the event's Avro schema and reports every problem at once, each with the
path of the field (``reply_to.channel``, ``attachments[0].url``); unknown fields are
problems too. :func:`to_datum` turns an accepted body into what fastavro writes.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pipeline.events.catalog import METADATA_FIELD

__all__ = ["FieldDoc", "body_problems", "describe_fields", "example_body", "to_datum"]

_INT_RANGE = {"int": (-(2**31), 2**31 - 1), "long": (-(2**63), 2**63 - 1)}
_EXAMPLE_MILLIS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
_EXAMPLE_UUID = "00000000-0000-4000-8000-000000000000"


@dataclass(frozen=True, slots=True)
class FieldDoc:
    """One field of a body, nested fields included (``reply_to.channel``)."""

    path: str
    type: str
    doc: str
    default: str | None
    """The default as JSON text, or None when the field is required."""


class _Names:
    """Named types by full name: fastavro expands each at its first use only."""

    def __init__(self) -> None:
        self._known: dict[str, Any] = {}

    def resolve(self, schema: Any) -> Any:
        if isinstance(schema, str) and schema in self._known:
            return self._known[schema]
        if isinstance(schema, dict) and schema.get("type") in ("record", "enum", "fixed"):
            self._known.setdefault(str(schema["name"]), schema)
        return schema


def _body_fields(schema: Mapping[str, Any]) -> list[Any]:
    return [f for f in schema["fields"] if f["name"] != METADATA_FIELD]


# --------------------------------------------------------------------------- describing


def describe_fields(schema: Mapping[str, Any]) -> list[FieldDoc]:
    """Every field of the body, depth first, nested records' fields after their parent."""
    names = _Names()
    names.resolve(schema)
    docs: list[FieldDoc] = []
    _describe_record(_body_fields(schema), "", names, docs)
    return docs


def _describe_record(fields: list[Any], prefix: str, names: _Names, docs: list[FieldDoc]) -> None:
    for field in fields:
        path = f"{prefix}{field['name']}"
        default = _json_text(field["default"]) if "default" in field else None
        field_type = names.resolve(field["type"])
        docs.append(FieldDoc(path, _type_text(field_type, names), field.get("doc", ""), default))
        for nested, suffix in _nested_records(field_type, names):
            _describe_record(nested["fields"], f"{path}{suffix}.", names, docs)


def _nested_records(schema: Any, names: _Names) -> list[tuple[Any, str]]:
    """Records inside a field's type, with the path suffix that reaches them."""
    schema = names.resolve(schema)
    if isinstance(schema, list):
        return [found for branch in schema for found in _nested_records(branch, names)]
    if not isinstance(schema, dict):
        return []
    kind = schema["type"]
    if kind == "record":
        return [(schema, "")]
    if kind == "array":
        return [(r, f"[]{s}") for r, s in _nested_records(schema["items"], names)]
    if kind == "map":
        return [(r, f"{{}}{s}") for r, s in _nested_records(schema["values"], names)]
    return []


def _type_text(schema: Any, names: _Names) -> str:
    schema = names.resolve(schema)
    if isinstance(schema, list):
        return " | ".join(_type_text(branch, names) for branch in schema)
    if isinstance(schema, str):
        return schema.rsplit(".", 1)[-1] if "." in schema else schema
    kind = schema["type"]
    short = str(schema.get("name", "")).rsplit(".", 1)[-1]
    if kind == "record":
        return f"record {short}"
    if kind == "enum":
        return f"enum {short} ({', '.join(schema['symbols'])})"
    if kind == "fixed":
        return f"fixed {short} ({schema['size']} bytes)"
    if kind == "array":
        return f"array of {_type_text(schema['items'], names)}"
    if kind == "map":
        return f"map of {_type_text(schema['values'], names)}"
    logical = schema.get("logicalType")
    if logical == "timestamp-millis":
        return "timestamp-millis (epoch milliseconds)"
    return f"{kind} ({logical})" if logical else str(kind)


def _json_text(value: Any) -> str:
    return json.dumps(value)


# --------------------------------------------------------------------------- example


def example_body(schema: Mapping[str, Any]) -> dict[str, Any]:
    """A body with a value for every field (a union's first non-null branch)."""
    names = _Names()
    names.resolve(schema)
    return {f["name"]: _example(f["type"], f["name"], names) for f in _body_fields(schema)}


def _example(schema: Any, name: str, names: _Names) -> Any:
    schema = names.resolve(schema)
    if isinstance(schema, list):
        branches = [b for b in schema if b != "null"] or ["null"]
        return _example(branches[0], name, names)
    kind = schema["type"] if isinstance(schema, dict) else schema
    logical = schema.get("logicalType") if isinstance(schema, dict) else None
    if logical == "uuid":
        return _EXAMPLE_UUID
    if logical in ("timestamp-millis", "local-timestamp-millis"):
        return _EXAMPLE_MILLIS
    simple = {
        "null": None,
        "boolean": False,
        "int": 0,
        "long": 0,
        "float": 0.0,
        "double": 0.0,
        "string": f"<{name}>",
        "bytes": "",
    }
    if kind in simple:
        return simple[kind]
    if kind == "record":
        return {f["name"]: _example(f["type"], f["name"], names) for f in schema["fields"]}
    if kind == "enum":
        return schema["symbols"][0]
    if kind == "fixed":
        return "\u0000" * int(schema["size"])
    if kind == "array":
        return [_example(schema["items"], name, names)]
    if kind == "map":
        return {"key": _example(schema["values"], name, names)}
    raise ValueError(f"no example for Avro type {kind!r}")


# --------------------------------------------------------------------------- checking


def body_problems(schema: Mapping[str, Any], body: Mapping[str, Any]) -> list[str]:
    """Every problem of ``body`` against the event's schema, one line each, field first."""
    problems: list[str] = []
    names = _Names()
    names.resolve(schema)
    if METADATA_FIELD in body:
        problems.append(
            f"{METADATA_FIELD}: set by the producer (conversation, tenant, ids); "
            "leave it out of the body"
        )
    rest = {k: v for k, v in body.items() if k != METADATA_FIELD}
    _convert_record(_body_fields(schema), rest, "", names, problems)
    return problems


def to_datum(schema: Mapping[str, Any], body: Mapping[str, Any]) -> dict[str, Any]:
    """The body as fastavro writes it (``bytes`` as bytes); raises ValueError if invalid."""
    problems: list[str] = []
    names = _Names()
    names.resolve(schema)
    datum = _convert_record(_body_fields(schema), body, "", names, problems)
    if problems:
        raise ValueError("; ".join(problems))
    return datum


def _convert_record(
    fields: list[Any], value: Any, path: str, names: _Names, problems: list[str]
) -> dict[str, Any]:
    where = path or "body"
    if not isinstance(value, Mapping):
        problems.append(f"{where}: expected an object, got {_kind_of(value)}")
        return {}
    known = {f["name"] for f in fields}
    for unknown in sorted(set(value) - known):
        problems.append(
            f"{_join(path, unknown)}: unknown field (known: {', '.join(sorted(known))})"
        )
    converted: dict[str, Any] = {}
    for field in fields:
        name = field["name"]
        field_path = _join(path, name)
        if name not in value:
            if "default" not in field:
                field_type = _type_text(names.resolve(field["type"]), names)
                problems.append(f"{field_path}: missing (required, {field_type})")
            continue
        converted[name] = _convert(field["type"], value[name], field_path, names, problems)
    return converted


def _convert(schema: Any, value: Any, path: str, names: _Names, problems: list[str]) -> Any:
    schema = names.resolve(schema)
    if isinstance(schema, list):
        return _convert_union(schema, value, path, names, problems)
    kind = schema["type"] if isinstance(schema, dict) else schema
    if kind == "record":
        return _convert_record(schema["fields"], value, path, names, problems)
    if kind == "enum":
        if value not in schema["symbols"]:
            problems.append(f"{path}: {value!r} is not one of {', '.join(schema['symbols'])}")
        return value
    if kind == "array":
        if not isinstance(value, list):
            problems.append(f"{path}: expected an array, got {_kind_of(value)}")
            return value
        return [
            _convert(schema["items"], item, f"{path}[{i}]", names, problems)
            for i, item in enumerate(value)
        ]
    if kind == "map":
        if not isinstance(value, Mapping):
            problems.append(f"{path}: expected an object (a map), got {_kind_of(value)}")
            return value
        return {
            k: _convert(schema["values"], v, f"{path}.{k}", names, problems)
            for k, v in value.items()
        }
    logical = schema.get("logicalType") if isinstance(schema, dict) else None
    return _convert_primitive(str(kind), logical, schema, value, path, problems)


def _convert_union(
    branches: list[Any], value: Any, path: str, names: _Names, problems: list[str]
) -> Any:
    if value is None and "null" in branches:
        return None
    candidates = [b for b in branches if b != "null"]
    attempts: list[list[str]] = []
    for branch in candidates:
        branch_problems: list[str] = []
        converted = _convert(branch, value, path, names, branch_problems)
        if not branch_problems:
            return converted
        attempts.append(branch_problems)
    if len(candidates) == 1:
        if value is None:
            problems.append(f"{path}: null is not allowed ({_type_text(candidates[0], names)})")
        else:
            problems.extend(attempts[0])
    else:
        problems.append(f"{path}: {_kind_of(value)} matches none of {_type_text(branches, names)}")
    return value


def _convert_primitive(
    kind: str, logical: Any, schema: Any, value: Any, path: str, problems: list[str]
) -> Any:
    is_int = isinstance(value, int) and not isinstance(value, bool)
    ok: bool
    if kind == "null":
        ok = value is None
    elif kind == "boolean":
        ok = isinstance(value, bool)
    elif kind in _INT_RANGE:
        low, high = _INT_RANGE[kind]
        if is_int and not low <= value <= high:
            problems.append(f"{path}: {value} is out of range for {kind}")
            return value
        ok = is_int
    elif kind in ("float", "double"):
        ok = is_int or isinstance(value, float)
    elif kind == "string":
        ok = isinstance(value, str)
        if ok and logical == "uuid" and not _is_uuid(value):
            problems.append(f"{path}: {value!r} is not a UUID")
            return value
    elif kind in ("bytes", "fixed"):
        return _convert_bytes(schema, value, path, problems)
    else:
        problems.append(f"{path}: unsupported Avro type {kind!r}")
        return value
    if not ok:
        expected = _type_text(schema, _Names())
        problems.append(f"{path}: expected {expected}, got {_kind_of(value)} {_short(value)}")
    return value


def _convert_bytes(schema: Any, value: Any, path: str, problems: list[str]) -> Any:
    if not isinstance(value, str):
        problems.append(f"{path}: expected bytes as text, got {_kind_of(value)}")
        return value
    try:
        data = value.encode("latin-1")
    except UnicodeEncodeError:
        problems.append(f"{path}: bytes as text take code points 0-255 only")
        return value
    size = schema.get("size") if isinstance(schema, dict) else None
    if size is not None and len(data) != size:
        problems.append(f"{path}: expected {size} bytes, got {len(data)}")
    return data


def _is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _kind_of(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _short(value: Any) -> str:
    text = repr(value)
    return f"({text[:40]}...)" if len(text) > 43 else f"({text})"
