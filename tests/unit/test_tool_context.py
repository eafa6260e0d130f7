"""A tool call's context, built from its tool_called event, and its idempotency key."""

from __future__ import annotations

import dataclasses

import pytest

import pipeline
from pipeline.config import bundled_dir
from pipeline.events.catalog import SchemaCatalog
from pipeline.events.model import Event, Metadata
from pipeline.events.serde import SingleObjectSerde
from pipeline.tool_context import ToolContext, idempotency_key

SERDE = SingleObjectSerde(SchemaCatalog.load(bundled_dir("schemas")))


def tool_called(call_id: str = "call-1", conversation: str = "web:acme:ada") -> Event:
    metadata = Metadata.new("tool_called", conversation, tenant_id="acme", producer="agent")
    data = {"call_id": call_id, "tool": "refund", "arguments_json": "{}", "timeout_ms": 5000}
    return Event(metadata, {**data, "depth": 0})


def test_the_key_is_the_event_id_the_same_when_the_event_is_read_again() -> None:
    event = tool_called()
    again = SERDE.decode(SERDE.encode(event))  # the same record, handled a second time
    assert idempotency_key(event) == str(event.id)
    assert idempotency_key(again) == idempotency_key(event)
    # Another call, even one the model gave the same call id, has a key of its own.
    assert idempotency_key(tool_called()) != idempotency_key(event)


def test_the_context_of_a_call_comes_from_its_event() -> None:
    event = tool_called("call-9")
    context = ToolContext.for_call(event)
    assert context == ToolContext(
        call_id="call-9",
        idempotency_key=str(event.id),
        tool="refund",
        conversation_id="web:acme:ada",
        tenant_id="acme",
        attempt=1,
    )
    assert ToolContext.for_call(event, attempt=3).attempt == 3
    with pytest.raises(dataclasses.FrozenInstanceError):
        context.attempt = 2  # type: ignore[misc]


def test_a_standalone_call_gets_a_new_key_each_time() -> None:
    first, second = ToolContext.standalone("refund"), ToolContext.standalone("refund")
    assert first.idempotency_key != second.idempotency_key
    assert (first.tool, first.conversation_id, first.attempt) == ("refund", "", 1)


def test_the_facade_exports_it() -> None:
    assert pipeline.ToolContext is ToolContext
    assert "ToolContext" in pipeline.__all__
