"""Context.emit: new events in the same chain, encoded at once, produced later."""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from pipeline.config import Settings, bundled_dir
from pipeline.errors import EventValidationError
from pipeline.events.catalog import SchemaCatalog
from pipeline.events.model import Event, Metadata
from pipeline.events.serde import CONTENT_TYPE, SingleObjectSerde
from pipeline.observability.tracing import trace_id
from pipeline.runtime.context import Context

PARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
INGRESS = datetime(2024, 3, 1, 8, 0, 0, 120000, tzinfo=UTC)


@pytest.fixture(scope="module")
def serde() -> SingleObjectSerde:
    return SingleObjectSerde(SchemaCatalog.load(bundled_dir("schemas")))


def incoming(event_id: str = "9b2f0c3e-5a1d-4e6f-8a7b-1c2d3e4f5a6b") -> Event:
    meta = Metadata(
        event_id=uuid.UUID(event_id),
        event_type="message_received",
        conversation_id="conv-wa-31612345678",
        tenant_id="acme",
        correlation_id=uuid.UUID("aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee"),
        causation_id=None,
        occurred_at=INGRESS,
        producer="gateway-whatsapp",
    )
    reply_to = {"channel": "whatsapp", "address": "+31612345678", "thread_id": None}
    return Event(
        meta,
        {
            "channel": "whatsapp",
            "sender_id": "+31612345678",
            "sender_name": None,
            "text": "hi",
            "reply_to": reply_to,
            "external_id": "wamid.HBgL",
            "attachments": [],
            "attributes": {},
        },
    )


def response(event: Event, text: str = "hello") -> dict[str, Any]:
    return {
        "reply_to": event["reply_to"],
        "text": text,
        "in_reply_to": event["external_id"],
        "proactive": False,
        "ingress_at": event.metadata.occurred_at,
    }


def context(
    serde: SingleObjectSerde,
    event: Event | None = None,
    *,
    service: str = "agent",
    prefix: str = "t-ctx.",
    traceparent: str | bytes | None = PARENT,
) -> Context:
    settings = Settings(topic_prefix=prefix)
    return Context(
        event or incoming(),
        service=service,
        attempt=1,
        serde=serde,
        topic_for=settings.topic,
        traceparent=traceparent,
        logger=logging.getLogger("test"),
    )


def test_emit_continues_the_chain(serde: SingleObjectSerde) -> None:
    ctx = context(serde)
    cause = ctx.event.metadata
    emitted = ctx.emit("response_ready", response(ctx.event))
    meta = emitted.metadata
    assert meta.event_type == "response_ready"
    assert meta.conversation_id == cause.conversation_id
    assert meta.tenant_id == cause.tenant_id
    assert meta.correlation_id == cause.correlation_id
    assert meta.causation_id == cause.event_id
    assert meta.event_id not in {cause.event_id, cause.correlation_id}
    assert meta.producer == "agent"
    assert meta.occurred_at.tzinfo is not None


def test_outgoing_is_keyed_by_conversation_on_the_prefixed_topic(
    serde: SingleObjectSerde,
) -> None:
    ctx = context(serde, prefix="staging.")
    emitted = ctx.emit("response_ready", response(ctx.event))
    (out,) = ctx.outgoing
    assert out.event is emitted
    assert out.key == "conv-wa-31612345678"
    assert out.topic == "staging.response_ready"


def test_outgoing_value_decodes_to_the_emitted_event(serde: SingleObjectSerde) -> None:
    ctx = context(serde)
    emitted = ctx.emit("response_ready", response(ctx.event, "how can I help?"))
    decoded = serde.decode(ctx.outgoing[0].value)
    assert decoded.metadata == emitted.metadata
    assert decoded["text"] == "how can I help?"
    assert decoded["ingress_at"] == INGRESS


def test_headers(serde: SingleObjectSerde) -> None:
    ctx = context(serde)
    emitted = ctx.emit("response_ready", response(ctx.event))
    headers = dict(ctx.outgoing[0].headers)
    assert len(headers) == len(ctx.outgoing[0].headers)
    assert headers["event-type"] == "response_ready"
    assert headers["event-id"] == str(emitted.id)
    assert headers["content-type"] == CONTENT_TYPE
    traceparent = headers["traceparent"]
    assert isinstance(traceparent, str)
    assert trace_id(traceparent) == "0af7651916cd43dd8448eb211c80319c"
    assert traceparent.split("-")[2] != "b7ad6b7169203331"


def test_traceparent_from_bytes_header(serde: SingleObjectSerde) -> None:
    ctx = context(serde, traceparent=PARENT.encode())
    ctx.emit("response_ready", response(ctx.event))
    traceparent = dict(ctx.outgoing[0].headers)["traceparent"]
    assert isinstance(traceparent, str)
    assert trace_id(traceparent) == "0af7651916cd43dd8448eb211c80319c"


def test_without_incoming_trace_a_new_trace_starts(serde: SingleObjectSerde) -> None:
    ctx = context(serde, traceparent=None)
    ctx.emit("response_ready", response(ctx.event))
    traceparent = dict(ctx.outgoing[0].headers)["traceparent"]
    assert isinstance(traceparent, str)
    assert trace_id(traceparent) not in {None, "0af7651916cd43dd8448eb211c80319c"}


def test_event_ids_repeat_for_a_repeated_attempt(serde: SingleObjectSerde) -> None:
    first, again = context(serde), context(serde)
    ids_first = [first.emit("response_ready", response(first.event, t)).id for t in "ab"]
    ids_again = [again.emit("response_ready", response(again.event, t)).id for t in "ab"]
    assert ids_first == ids_again
    assert ids_first[0] != ids_first[1]


def test_event_ids_differ_by_cause_and_by_service(serde: SingleObjectSerde) -> None:
    base = context(serde).emit("response_ready", response(incoming())).id
    other_cause = context(serde, incoming("00000000-0000-4000-8000-000000000001"))
    other_service = context(serde, service="notifier")
    assert other_cause.emit("response_ready", response(incoming())).id != base
    assert other_service.emit("response_ready", response(incoming())).id != base


def test_event_ids_are_valid_uuids_distinct_from_random_ones(serde: SingleObjectSerde) -> None:
    emitted = context(serde).emit("response_ready", response(incoming()))
    assert isinstance(emitted.id, uuid.UUID)
    assert emitted.id.version == 5


def test_emit_to_another_conversation(serde: SingleObjectSerde) -> None:
    ctx = context(serde)
    emitted = ctx.emit(
        "timer_requested",
        {
            "timer_id": "t-1",
            "action": "schedule",
            "due_at": INGRESS,
            "purpose": "follow_up",
            "payload_json": None,
        },
        conversation_id="conv-other",
    )
    assert emitted.conversation_id == "conv-other"
    (out,) = ctx.outgoing
    assert out.key == "conv-other"
    assert out.topic == "t-ctx.timer_requested"


def test_invalid_emit_raises_and_queues_nothing(serde: SingleObjectSerde) -> None:
    ctx = context(serde)
    with pytest.raises(EventValidationError):
        ctx.emit("response_ready", {"text": "no reply_to"})
    assert ctx.outgoing == []


def test_outgoing_is_a_copy(serde: SingleObjectSerde) -> None:
    ctx = context(serde)
    ctx.emit("response_ready", response(ctx.event))
    ctx.outgoing.clear()
    assert len(ctx.outgoing) == 1


def test_events_without_incoming_trace_join_their_correlation_trace(
    serde: SingleObjectSerde,
) -> None:
    ctx = context(serde, traceparent=None)
    first = ctx.emit("response_ready", response(ctx.event, "a"))
    second = ctx.emit("response_ready", response(ctx.event, "b"))
    traces = [dict(o.headers)["traceparent"] for o in ctx.outgoing]
    assert {trace_id(t) for t in traces} == {ctx.event.metadata.correlation_id.hex}
    spans = [str(t).split("-")[2] for t in traces]
    assert spans == [first.id.hex[16:], second.id.hex[16:]]


def test_a_repeated_attempt_repeats_the_traceparent(serde: SingleObjectSerde) -> None:
    first, again = context(serde), context(serde)
    first.emit("response_ready", response(first.event))
    again.emit("response_ready", response(again.event))
    assert (
        dict(first.outgoing[0].headers)["traceparent"]
        == dict(again.outgoing[0].headers)["traceparent"]
    )
