"""The start-up check of the event types a service handles and emits."""

from __future__ import annotations

from collections.abc import Iterable

from pipeline.errors import EventTypeError
from pipeline.events.catalog import SchemaCatalog


def check_event_types(
    service: str,
    handled: Iterable[str],
    emits: Iterable[str] | None,
    catalog: SchemaCatalog,
    topics: Iterable[str],
) -> None:
    """Every type the service handles or declares it emits needs a schema in the catalog
    and a topic definition; raises EventTypeError, in one line listing the known types,
    when one is missing."""
    with_schema = set(catalog.event_types)
    with_topic = set(topics)
    problems = []
    for role, types in (("handles", handled), ("emits", emits or ())):
        for event_type in types:
            missing = [
                what
                for what, known in (("schema", with_schema), ("topic definition", with_topic))
                if event_type not in known
            ]
            if missing:
                problems.append(f"{role} {event_type!r} (no {' and no '.join(missing)})")
    if problems:
        known = ", ".join(sorted(with_schema & with_topic)) or "none"
        raise EventTypeError(f"service {service} {'; '.join(problems)}; known event types: {known}")
