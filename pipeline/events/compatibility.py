"""Avro schema compatibility: can a reader with the new schema read what the old one wrote?

BACKWARD, as a schema registry checks it: the new version is the reader, the old one the
writer, resolved by the Avro specification's rules (a field the reader adds needs a
default, types must promote, enum symbols and union branches must be there). The rules
are Apache Avro's own checker (``avro.compatibility``, a port of the Java one).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import avro.schema
from avro.compatibility import ReaderWriterCompatibilityChecker, SchemaCompatibilityType

__all__ = ["backward_problems"]


def backward_problems(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """Why ``new`` cannot read data written with ``old`` (empty when it can).

    Both schemas are dicts with every named type inline (``catalog.load_expanded``).
    Each problem names where in the schema it is (``/fields/2/type``) and what is wrong.
    """
    reader = avro.schema.parse(json.dumps(new))
    writer = avro.schema.parse(json.dumps(old))
    checker = ReaderWriterCompatibilityChecker()  # type: ignore[no-untyped-call]
    result = checker.get_compatibility(reader, writer)
    if result.compatibility is SchemaCompatibilityType.compatible:
        return []
    kinds = sorted({kind.value.replace("_", " ") for kind in result.incompatibilities})
    where = ", ".join(sorted(result.locations))
    detail = "; ".join(sorted(result.messages))
    return [f"{kind} at {where}: {detail}" for kind in kinds] or [f"incompatible at {where}"]
