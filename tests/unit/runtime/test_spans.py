"""Spans of the runtime (through pipeline.testing) and of the gateway, recorded by an
in-memory exporter: each attempt a consumer span child of the record's traceparent, each
emit a producer span whose context is the output's traceparent."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from pipeline.config import Settings, bundled_dir
from pipeline.events.catalog import SchemaCatalog
from pipeline.events.model import Event
from pipeline.events.serde import SingleObjectSerde
from pipeline.observability.otel import OBSERVE
from pipeline.observability.tracing import event_traceparent, parent_trace
from pipeline.partitioner import partition_for
from pipeline.runtime.context import Context
from pipeline.runtime.memory_transport import MemoryBroker, MemoryProducer
from pipeline.runtime.publisher import Publisher
from pipeline.runtime.service import Service
from pipeline.services.echo import build as build_echo
from pipeline.services.gateway import create_app
from pipeline.testing import MemoryRecord, TestService
from tests.otel_support import ids, installed_exporter, named, parent_ids, traceparent
from tests.unit.runtime_events import chat

PARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
PARENT_IDS = (0x4BF92F3577B34DA6A3CE929D0E0E4736, 0x00F067AA0BA902B7)


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    yield from installed_exporter()


def header(record: MemoryRecord, name: str = "traceparent") -> str:
    value = dict(record.headers())[name]
    assert isinstance(value, bytes)
    return value.decode()


def flaky() -> Service:
    """Fails the first attempt of every event, then echoes it."""
    service = Service("flaky", emits=["response_ready"])
    attempts: list[int] = []

    @service.handler("message_received")
    async def answer(event: Event, ctx: Context) -> None:
        attempts.append(ctx.attempt)
        if ctx.attempt == 1:
            raise RuntimeError("first attempts fail")
        ctx.emit("response_ready", {"reply_to": event["reply_to"], "text": "ok"})

    return service


async def test_an_attempt_is_a_consumer_span_whose_emits_are_producer_spans(
    spans: InMemorySpanExporter,
) -> None:
    async with TestService(build_echo()) as svc:
        sent = await svc.send(
            "message_received", chat("hi"), conversation_id="c1", traceparent=PARENT
        )
        reply = await svc.next_output("response_ready")
        [incoming] = svc.broker.records("message_received")
        [outgoing] = svc.broker.records("response_ready")
    finished = spans.get_finished_spans()
    process = named(finished, "process message_received")
    send = named(finished, "send response_ready")

    # The consumer span continues the trace of the record's header, as a remote child.
    assert process.kind == SpanKind.CONSUMER
    assert process.parent is not None and process.parent.is_remote
    assert traceparent_of_parent(process) == header(incoming)
    assert ids(process)[0] == PARENT_IDS[0]
    assert process.attributes == {
        "messaging.system": "kafka",
        "messaging.operation.type": "process",
        "messaging.operation.name": "process",
        "messaging.destination.name": "message_received",
        "messaging.consumer.group.name": "echo",
        "messaging.kafka.destination.partition": incoming.partition(),
        "messaging.kafka.message.offset": 0,
        "messaging.kafka.message.key": "c1",
        "messaging.message.id": str(sent.id),
        "pipeline.service": "echo",
        "pipeline.handler": "echo",
        "pipeline.attempt": 1,
        "pipeline.conversation_id": "c1",
        "pipeline.event_id": str(sent.id),
        "pipeline.event_type": "message_received",
    }
    assert process.status.status_code == StatusCode.UNSET

    # The emit is a producer span under it, and the output's header names that span.
    assert send.kind == SpanKind.PRODUCER
    assert parent_ids(send) == ids(process)
    assert header(outgoing) == traceparent(send)
    assert send.attributes is not None
    assert send.attributes["messaging.operation.type"] == "send"
    assert send.attributes["messaging.destination.name"] == "response_ready"
    assert send.attributes["pipeline.event_id"] == str(reply.id)
    assert send.attributes["pipeline.event_type"] == "response_ready"


def traceparent_of_parent(span: Any) -> str:
    return f"00-{span.parent.trace_id:032x}-{span.parent.span_id:016x}-01"


async def test_a_failed_attempt_is_a_failed_span_and_the_retry_a_new_one(
    spans: InMemorySpanExporter,
) -> None:
    async with TestService(flaky()) as svc:
        await svc.send("message_received", chat("hi"), traceparent=PARENT)
        await svc.next_output("response_ready")
    processes = [s for s in spans.get_finished_spans() if s.name == "process message_received"]
    assert [s.attributes["pipeline.attempt"] for s in processes if s.attributes] == [1, 2]
    first, second = processes
    assert first.status.status_code == StatusCode.ERROR
    assert [e.name for e in first.events] == ["exception"]
    assert second.status.status_code == StatusCode.UNSET
    # Both attempts are children of the same record; only the second one sent anything.
    assert parent_ids(first) == parent_ids(second)
    assert parent_ids(named(spans.get_finished_spans(), "send response_ready")) == ids(second)


async def test_without_tracing_the_traceparent_is_todays_deterministic_one() -> None:
    assert not OBSERVE.tracing and not OBSERVE.active
    async with TestService(build_echo()) as svc:
        await svc.send("message_received", chat("hi"), traceparent=PARENT)
        reply = await svc.next_output("response_ready")
        [incoming] = svc.broker.records("message_received")
        [outgoing] = svc.broker.records("response_ready")
    trace = parent_trace(header(incoming))
    assert trace is not None
    assert header(outgoing) == event_traceparent(trace, reply.metadata.event_id_text)


class HeaderRecorder:
    """A producer port that acknowledges at once and keeps each record's headers."""

    def __init__(self) -> None:
        self.headers: list[dict[str, Any]] = []

    async def send(self, topic: str, value: bytes, key: str, headers: Any = ()) -> Any:
        self.headers.append(dict(headers))
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        future.set_result(None)
        return future


@pytest.fixture
async def gateway() -> AsyncIterator[tuple[httpx.AsyncClient, HeaderRecorder]]:
    settings = Settings(metrics_port=0, gateway={"web_tokens": {"acme": "tok-acme"}})
    producer = HeaderRecorder()
    serde = SingleObjectSerde(SchemaCatalog.load(bundled_dir("schemas")))
    publisher = Publisher(settings, producer, serde, "gateway")  # type: ignore[arg-type]
    app = create_app(settings, publisher=publisher)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gw") as http:
        yield http, producer


async def test_a_gateway_request_is_a_server_span_parent_of_its_sends(
    spans: InMemorySpanExporter, gateway: tuple[httpx.AsyncClient, HeaderRecorder]
) -> None:
    http, producer = gateway
    body = {"user_id": "u1", "text": "hi", "callback_url": "http://cb/r"}
    auth = {"Authorization": "Bearer tok-acme"}
    answer = await http.post("/v1/web/messages", json=body, headers={**auth, "traceparent": PARENT})
    assert answer.status_code == 202, answer.text
    refused = await http.post("/v1/web/messages", json=body)
    assert refused.status_code == 401

    requests = [s for s in spans.get_finished_spans() if s.kind == SpanKind.SERVER]
    server, unauthorised = requests
    assert server.name == "POST /v1/web/messages"
    assert parent_ids(server) == PARENT_IDS
    assert server.attributes is not None
    assert server.attributes["http.route"] == "/v1/web/messages"
    assert server.attributes["http.response.status_code"] == 202
    send = named(spans.get_finished_spans(), "send message_received")
    assert send.kind == SpanKind.PRODUCER
    assert parent_ids(send) == ids(server)
    [headers] = producer.headers
    assert headers["traceparent"] == traceparent(send)
    # A request without a traceparent starts a trace of its own.
    assert unauthorised.parent is None
    assert unauthorised.attributes is not None
    assert unauthorised.attributes["http.response.status_code"] == 401


async def test_a_send_span_ends_when_acknowledged_naming_the_partition_and_offset(
    spans: InMemorySpanExporter,
) -> None:
    async with TestService(build_echo()) as svc:
        svc.broker.hold_acknowledgements()
        await svc.send("message_received", chat("one"), conversation_id="c1")
        await svc.send("message_received", chat("two"), conversation_id="c7")
        await svc.until(lambda: len(svc.broker.records("response_ready")) == 2, "both replies")
        assert not [s for s in spans.get_finished_spans() if s.name == "send response_ready"], (
            "a send span lasts until the broker acknowledged its record"
        )
        svc.broker.release_acknowledgements()
        await svc.settle()
        outgoing = svc.broker.records("response_ready")
    sends = [s for s in spans.get_finished_spans() if s.name == "send response_ready"]
    assert len(sends) == 2
    where = {traceparent(s): s.attributes for s in sends}
    for record in outgoing:
        attributes = where[header(record)]
        assert attributes is not None
        assert attributes["messaging.kafka.destination.partition"] == record.partition()
        assert attributes["messaging.kafka.message.offset"] == record.offset()


async def test_a_published_events_send_span_names_its_partition(
    spans: InMemorySpanExporter,
) -> None:
    settings = Settings(metrics_port=0)
    serde = SingleObjectSerde(SchemaCatalog.load(bundled_dir("schemas")))
    broker = MemoryBroker(lambda _topic: 8)
    publisher = Publisher(settings, MemoryProducer(broker, asyncio.get_running_loop()), serde, "op")
    for conversation in ("c1", "c2", "c3"):
        await publisher.publish(
            "operator_message",
            {"operator_id": "ada", "text": "hi"},
            conversation_id=conversation,
            tenant_id="t1",
        )
    records = broker.records("operator_message")
    assert len({r.partition() for r in records}) > 1, "the conversations land apart"
    sends = {traceparent(s): s for s in spans.get_finished_spans() if s.kind == SpanKind.PRODUCER}
    for record in records:
        attributes = sends[header(record)].attributes
        assert attributes is not None
        assert attributes["messaging.kafka.destination.partition"] == record.partition()
        assert attributes["messaging.kafka.destination.partition"] == partition_for(
            record.key() or "", 8
        )
