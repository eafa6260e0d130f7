"""Which ``PIPELINE_*`` environment variables name a real setting.

Settings ignore unknown variables, so a typo (``PIPELINE_MAX_INFLIGHT``) would silently
keep the default. :func:`unknown_variables` finds every ``PIPELINE_*`` variable that is
neither a setting nor one of the few variables the project's tools read themselves, and
suggests the nearest real name.

A name is resolved against the pydantic models: a top-level field of ``Settings``, then
``SECTION__FIELD`` of a nested section, ...; a dict field (the librdkafka passthroughs,
``web_tokens``, ...) takes any non-empty key below it. Case-insensitive, as Settings is.
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import BaseModel

PREFIX = "PIPELINE_"

TOOL_VARIABLES: Mapping[str, str] = {
    "PIPELINE_DEVKAFKA_CACHE": "pipeline.dev.kafka: where the broker jars are cached",
    "PIPELINE_TOOLS_DIR": ".ci/deploy-tools and tests/deploy: where helm and friends live",
    "PIPELINE_CI_KAFKA_PORT": ".ci/run: port of the broker CI starts",
    "PIPELINE_IMAGE": "docker-compose.yml: the image every service runs (read by Compose)",
}
"""``PIPELINE_*`` variables that are not settings but are read by the project's tools."""


def unwrap(annotation: Any) -> list[Any]:
    """The types of an annotation, ``X | None`` and ``Optional[X]`` split apart."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return [a for a in typing.get_args(annotation) if a is not type(None)]
    return [annotation]


def resolve(name: str, root: type[BaseModel]) -> tuple[Any, str]:
    """The annotation of the setting ``name`` sets, and an error (empty when it is one)."""
    if not name.upper().startswith(PREFIX):
        return None, f"{name} lacks the {PREFIX} prefix"
    parts = name[len(PREFIX) :].lower().split("__")
    model = root
    for depth, part in enumerate(parts):
        field = model.model_fields.get(part)
        if field is None:
            known = ", ".join(sorted(model.model_fields))
            return None, f"{name}: {part!r} is not a field of {model.__name__} ({known})"
        rest = parts[depth + 1 :]
        if not rest:
            return field.annotation, ""
        kinds = unwrap(field.annotation)
        if any(typing.get_origin(k) is dict for k in kinds):
            if all(rest):
                return field.annotation, ""
            return None, f"{name}: an empty key below the {part!r} passthrough"
        sections = [k for k in kinds if isinstance(k, type) and issubclass(k, BaseModel)]
        if not sections:
            return None, f"{name}: {model.__name__}.{part} is not a section with fields"
        model = sections[0]
    return None, f"{name}: nothing to set"  # pragma: no cover - split never yields []


def setting_names(root: type[BaseModel]) -> list[str]:
    """Every variable name a setting answers to (a passthrough as ``..._<KEY>``)."""
    names: list[str] = []

    def walk(model: type[BaseModel], prefix: str) -> None:
        for field_name, field in model.model_fields.items():
            name = f"{prefix}{field_name.upper()}"
            names.append(name)
            for kind in unwrap(field.annotation):
                if isinstance(kind, type) and issubclass(kind, BaseModel):
                    walk(kind, f"{name}__")

    walk(root, PREFIX)
    return names


def unknown_variables(environ: Mapping[str, str], root: type[BaseModel]) -> list[str]:
    """One problem per unknown ``PIPELINE_*`` variable, with the nearest real name."""
    known = setting_names(root)
    problems = []
    for name in sorted(environ):
        upper = name.upper()
        if not upper.startswith(PREFIX) or upper in TOOL_VARIABLES:
            continue
        _, error = resolve(name, root)
        if error:
            problems.append(f"{name}: unknown variable{_suggestion(upper, known)}")
    return problems


def _suggestion(name: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    return f"; did you mean {close[0]}?" if close else " (see docs/reference/settings.md)"
