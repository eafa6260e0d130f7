"""The settings reference page, generated from the settings classes.

``python -m pipeline.config.reference > docs/reference/settings.md`` writes one table per
section: every field's environment variable, type (with its bounds), default and
description. Objects that a setting holds by name (an MCP server, a mail relay, ...)
get a table of their keys. A unit test fails when the committed page differs from what
this writes, so the page cannot drift from the code.
"""

from __future__ import annotations

import enum
import json
import sys
import types
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import annotated_types
from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from pipeline.config import Settings
from pipeline.config.env_names import PREFIX, unwrap

COMMAND = "python -m pipeline.config.reference > docs/reference/settings.md"
"""The command that regenerates the committed page."""

_HEADER = f"""# Settings reference

<!-- Generated from pipeline/config by `{COMMAND}`; do not edit by hand. -->

Every setting is an environment variable read once when a process starts. Nested
sections use a double underscore (`PIPELINE_GATEWAY__PORT`); a setting of type `dict`
or `list` takes JSON (`PIPELINE_GATEWAY__WEB_TOKENS='{{"acme": "..."}}'`), and a `dict`
also takes one variable per key (`PIPELINE_KAFKA__SASL_USERNAME=me`). A variable that
names no setting is refused at start with the nearest real name. Values of type
`secret` are never printed or logged. See [Configuration](../configuration.md) for how
settings are read and checked.
"""

_SECTION_TITLES = {
    "": "General",
    "schema_registry": "Schema registry",
    "gateway": "Gateway",
    "delivery": "Delivery",
    "llm": "Language model",
    "agent": "Agent",
    "tools": "Tools and the tool catalog",
    "scheduler": "Scheduler",
    "webhooks": "Webhooks",
    "console": "Operator console",
}


def fields_without_description(root: type[BaseModel] = Settings) -> list[str]:
    """The variable names (or object keys) of every field that has no description."""
    missing: list[str] = []
    for _, rows in _sections(root):
        missing.extend(name for name, field in rows if not (field.description or "").strip())
    for model, _ in _objects(root):
        missing.extend(
            f"{model.__name__}.{name}"
            for name, field in model.model_fields.items()
            if not (field.description or "").strip()
        )
    return missing


def render(root: type[BaseModel] = Settings) -> str:
    """The whole page, as Markdown."""
    parts = [_HEADER]
    for section, rows in _sections(root):
        parts.append(f"## {_SECTION_TITLES.get(section, section)}\n")
        intro = root.model_fields[section].description if section else None
        if intro:
            parts.append(f"{_text(intro)}\n")
        parts.append(_table("variable", [(f"`{name}`", field) for name, field in rows]))
    parts.append("## Objects in settings\n")
    parts.append("Some settings hold JSON objects by name; these are their keys.\n")
    for model, where in _objects(root):
        parts.append(f"### {model.__name__}\n")
        used = ", ".join(f"`{name}`" for name in where)
        doc = _text(" ".join((model.__doc__ or "").split()))
        parts.append(f"{doc} The values of {used}.\n" if doc else f"The values of {used}.\n")
        rows = [(f"`{name}`", field) for name, field in model.model_fields.items()]
        parts.append(_table("key", rows))
    return "\n".join(parts)


def _sections(root: type[BaseModel]) -> Iterator[tuple[str, list[tuple[str, FieldInfo]]]]:
    """("", top-level fields), then (section name, its fields), with variable names."""
    top: list[tuple[str, FieldInfo]] = []
    nested: list[tuple[str, list[tuple[str, FieldInfo]]]] = []
    for name, field in root.model_fields.items():
        section = _section_model(field)
        if section is None:
            top.append((f"{PREFIX}{name.upper()}", field))
            continue
        prefix = f"{PREFIX}{name.upper()}__"
        nested.append((name, [(prefix + n.upper(), f) for n, f in section.model_fields.items()]))
    yield "", top
    yield from nested


def _objects(root: type[BaseModel]) -> list[tuple[type[BaseModel], list[str]]]:
    """Models held as the values of a dict setting, with the variables that hold them."""
    found: dict[type[BaseModel], list[str]] = {}
    for _, rows in _sections(root):
        for name, field in rows:
            for kind in unwrap(field.annotation):
                if typing.get_origin(kind) is dict:
                    value = typing.get_args(kind)[1]
                    if isinstance(value, type) and issubclass(value, BaseModel):
                        found.setdefault(value, []).append(name)
    return list(found.items())


def _section_model(field: FieldInfo) -> type[BaseModel] | None:
    kinds = [k for k in unwrap(field.annotation) if isinstance(k, type)]
    return next((k for k in kinds if issubclass(k, BaseModel)), None)


def _table(first: str, rows: list[tuple[str, FieldInfo]]) -> str:
    lines = [f"| {first} | type | default | description |", "|---|---|---|---|"]
    for name, field in rows:
        default = _default(field)
        shown = default if default in ("required", "unset") else _cell(default)
        cells = [name, _cell(_type(field)), shown, _text(field.description or "")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _type(field: FieldInfo) -> str:
    text = _annotation(field.annotation)
    bounds = []
    for item in field.metadata:
        for attr, sign in (("ge", "≥"), ("gt", ">"), ("le", "≤"), ("lt", "<")):
            if isinstance(item, getattr(annotated_types, attr.capitalize())):
                bounds.append(f"{sign} {getattr(item, attr)}")
        if isinstance(item, annotated_types.MinLen):
            bounds.append(f"at least {item.min_length}")
    return f"{text}, {' and '.join(bounds)}" if bounds else text


def _annotation(annotation: Any) -> str:
    """A short, readable name of a type annotation."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        return _annotation(args[0])
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_annotation(a) for a in args)
    if origin is typing.Literal:
        return " or ".join(json.dumps(a) for a in args)
    if origin in (list, tuple):
        return f"list[{_annotation(args[0])}]" if args else "list"
    if origin is dict:
        return f"dict[{_annotation(args[0])}, {_annotation(args[1])}]"
    if annotation is type(None):
        return "null"
    if annotation is SecretStr:
        return "secret"
    if annotation is Path:
        return "path"
    if isinstance(annotation, type):
        return "IP network" if annotation.__name__ == "IPvAnyNetwork" else annotation.__name__
    return str(annotation)


def _default(field: FieldInfo) -> str:
    if field.default_factory is not None:
        value = field.default_factory()  # type: ignore[call-arg]
    elif field.default is PydanticUndefined:
        return "required"
    else:
        value = field.default
    if value is None:
        return "unset"
    if isinstance(value, SecretStr):
        return "(secret)"
    if isinstance(value, enum.Enum):
        value = value.value
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value if not isinstance(value, tuple) else list(value), default=str)
    if isinstance(value, str):
        return json.dumps(value)
    return str(value).lower() if isinstance(value, bool) else str(value)


def _cell(text: str) -> str:
    """Code in a table cell: pipes escaped, so they do not split the cell."""
    return f"`{text}`".replace("|", "\\|") if text else ""


def _text(text: str) -> str:
    """Prose in a table cell: no pipes, no raw HTML, no line breaks."""
    text = " ".join(text.split())
    return text.replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")


def main() -> None:
    """Write the page to stdout."""
    sys.stdout.write(render())


if __name__ == "__main__":
    main()
