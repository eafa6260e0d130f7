"""The start-up check of the event types a service handles and declares it emits."""

from __future__ import annotations

import pytest

from pipeline.config import Settings, bundled_dir
from pipeline.errors import EventTypeError
from pipeline.events.catalog import SchemaCatalog
from pipeline.events.model import Event
from pipeline.runtime.context import Context
from pipeline.runtime.event_types import check_event_types
from pipeline.runtime.service import Service
from pipeline.services import BUILT_IN, load_service
from pipeline.testing import TestService
from pipeline.topology import load_topology

CATALOG = SchemaCatalog.load(bundled_dir("schemas"))
TOPICS = load_topology(bundled_dir("topics")).names


def test_known_types_pass() -> None:
    check_event_types("s", ["message_received"], ["response_ready"], CATALOG, TOPICS)
    check_event_types("s", ["tool_called"], None, CATALOG, TOPICS)


def test_an_unknown_handled_type_is_named_with_the_known_ones_in_one_line() -> None:
    with pytest.raises(EventTypeError) as raised:
        check_event_types("echo", ["mesage_received"], None, CATALOG, TOPICS)
    text = str(raised.value)
    assert "\n" not in text
    assert "service echo handles 'mesage_received' (no schema and no topic definition)" in text
    assert text.endswith(f"known event types: {', '.join(CATALOG.event_types)}")


def test_a_declared_emit_without_a_topic_is_refused() -> None:
    with pytest.raises(EventTypeError, match=r"emits 'respons_ready' \(no schema"):
        check_event_types("echo", ["message_received"], ["respons_ready"], CATALOG, TOPICS)
    # A type with a schema but no topic definition is as unusable.
    with pytest.raises(EventTypeError, match=r"emits 'message_received' \(no topic definition\)"):
        without = [t for t in TOPICS if t != "message_received"]
        check_event_types("echo", [], ["message_received"], CATALOG, without)


def test_a_service_with_an_unknown_handled_type_does_not_start() -> None:
    service = Service("typo")

    @service.handler("mesage_received")
    async def handle(event: Event, ctx: Context) -> None:
        raise AssertionError("never runs")

    with pytest.raises(
        EventTypeError,
        match="known event types: approval_decided, approval_requested, context_updated",
    ):
        TestService(service)


# The gateway and the console are HTTP servers, not services with handlers.
@pytest.mark.parametrize("name", sorted(set(BUILT_IN) - {"gateway", "console"}))
def test_every_built_in_service_declares_what_it_emits(name: str) -> None:
    service = load_service(name, Settings())
    assert isinstance(service, Service)
    assert service.emits, f"{name} declares no emits"
    TestService(service)  # passes the start-up check
