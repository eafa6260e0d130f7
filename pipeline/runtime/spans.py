"""The spans of a turn, linked through the ``traceparent`` header of each Kafka record.

- the gateway's HTTP request: a SERVER span, child of the request's ``traceparent``
  (:func:`server_span`);
- each produce: a PRODUCER span ``send <topic>`` whose context becomes the record's
  ``traceparent`` (:func:`start_send` for a handler's emit, :func:`publish_span` for the
  Publisher), ended once the broker acknowledged the record, with the partition and
  offset it landed on (:func:`landed`; a partition is chosen by the producer's
  partitioner, so it is known only then);
- each handler attempt: a CONSUMER span ``process <topic>``, child of the consumed
  record's ``traceparent`` (:func:`observed_attempt`);
- the LLM call, the tool call and delivery's send to the channel: child spans
  (:func:`span`).

With Kafka's messaging semantic-convention attributes (``messaging.*``) and the
pipeline's own (``pipeline.*``). None of this runs unless tracing is on
(:mod:`pipeline.observability.otel`); :func:`span` then is a no-op.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import INVALID_SPAN, Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.types import AttributeValue

from pipeline.observability.logs import LOG_FIELDS, LogFields
from pipeline.observability.otel import OBSERVE

if TYPE_CHECKING:
    from pipeline.events.model import Event
    from pipeline.runtime.context import Context
    from pipeline.runtime.ports import AckCallback, Record
    from pipeline.runtime.service import HandlerSpec

_PROPAGATOR = TraceContextTextMapPropagator()
_NO_SPAN: contextlib.nullcontext[Span] = contextlib.nullcontext(INVALID_SPAN)
Attributes = Mapping[str, AttributeValue]


def span(
    name: str, attributes: Attributes | None = None, *, kind: SpanKind = SpanKind.INTERNAL
) -> contextlib.AbstractContextManager[Span]:
    """A child span of the current one for the block (recording the exception that
    leaves it); a no-op span when tracing is off."""
    if not OBSERVE.tracing:
        return _NO_SPAN
    return OBSERVE.tracer.start_as_current_span(name, kind=kind, attributes=attributes)


def failed(current: Span, reason: str | None) -> None:
    """Mark ``current`` as failed with ``reason`` (for failures that raise nothing)."""
    current.set_status(Status(StatusCode.ERROR, reason))


def remote_parent(traceparent: str | bytes | None) -> otel_context.Context:
    """A context whose span is the one ``traceparent`` names (empty when it is invalid:
    a span started in it begins a new trace)."""
    if isinstance(traceparent, bytes):
        traceparent = traceparent.decode("ascii", "replace")
    if not traceparent:
        return otel_context.Context()
    return _PROPAGATOR.extract({"traceparent": traceparent}, otel_context.Context())


def traceparent_of(current: Span) -> str:
    """The W3C ``traceparent`` naming ``current`` as the parent of what follows."""
    ctx = current.get_span_context()
    return f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{int(ctx.trace_flags):02x}"


async def observed_attempt(
    handler: HandlerSpec, event: Event, ctx: Context, msg: Record, group: str
) -> None:
    """Run one handler attempt with its log fields set and, when tracing is on, inside
    its CONSUMER span ``process <topic>`` (the span ``ctx.emit`` parents its sends on).
    An exception leaving the handler is recorded on the span, which is marked failed."""
    fields = LOG_FIELDS.set(
        LogFields(event.conversation_id, event.metadata.event_id_text, ctx.trace[0])
    )
    try:
        if not OBSERVE.tracing:
            await handler.fn(event, ctx)
            return
        topic = msg.topic() or ""
        attributes: dict[str, AttributeValue] = {
            "messaging.system": "kafka",
            "messaging.operation.type": "process",
            "messaging.operation.name": "process",
            "messaging.destination.name": topic,
            "messaging.consumer.group.name": group,
            "messaging.kafka.destination.partition": msg.partition() or 0,
            "messaging.kafka.message.offset": msg.offset() or 0,
            "messaging.kafka.message.key": event.conversation_id,
            "messaging.message.id": event.metadata.event_id_text,
            "pipeline.service": ctx.service,
            "pipeline.handler": handler.name,
            "pipeline.attempt": ctx.attempt,
            **_event_attributes(event),
        }
        with OBSERVE.tracer.start_as_current_span(
            f"process {topic}",
            context=remote_parent(ctx.traceparent),
            kind=SpanKind.CONSUMER,
            attributes=attributes,
        ) as current:
            ctx.span = current
            await handler.fn(event, ctx)
    finally:
        LOG_FIELDS.reset(fields)


def start_send(parent: Span, topic: str, event: Event, service: str) -> Span:
    """The PRODUCER span ``send <topic>`` of an event a handler emits, a child of the
    handler's span. It stays open until the record is acknowledged (:func:`ending` wraps
    its acknowledgement callback) or dropped (:func:`dropped`: the attempt failed, so
    nothing it emitted is produced); :func:`traceparent_of` it is the record's header."""
    return OBSERVE.tracer.start_span(
        f"send {topic}",
        context=trace.set_span_in_context(parent),
        kind=SpanKind.PRODUCER,
        attributes=_send_attributes(topic, event, service),
    )


def landed(current: Span, record: Record | None) -> None:
    """Record on a send span where the broker put its record: partition and offset."""
    if record is None:
        return
    partition, offset = record.partition(), record.offset()
    if partition is not None and partition >= 0:
        current.set_attribute("messaging.kafka.destination.partition", partition)
    if offset is not None and offset >= 0:
        current.set_attribute("messaging.kafka.message.offset", offset)


def ending(current: Span, on_ack: AckCallback) -> AckCallback:
    """``on_ack``, which first ends the send span ``current``: with where its record
    went (:func:`landed`), or failed when the broker refused it."""

    def report(err: Any, record: Any) -> None:
        if err is None:
            landed(current, record)
        else:
            current.set_status(Status(StatusCode.ERROR, f"not produced: {err}"))
        current.end()
        on_ack(err, record)

    return report


def dropped(sends: Iterable[Span | None], reason: str) -> None:
    """End the send spans of records that will not be produced (their attempt failed)."""
    for current in sends:
        if current is not None:
            current.set_status(Status(StatusCode.ERROR, f"not produced: {reason}"))
            current.end()


@contextlib.contextmanager
def publish_span(
    topic: str, event: Event, service: str, traceparent: str | bytes | None
) -> Iterator[Span]:
    """The PRODUCER span ``send <topic>`` of an event published outside a handler, for
    the block that produces it and waits for the acknowledgement; yields the span (the
    record's ``traceparent`` is :func:`traceparent_of` it). Its parent is the current
    span (a gateway request, a handler attempt) or else the one ``traceparent`` names.
    Call :func:`landed` on it with the acknowledged record before the block ends."""
    if trace.get_current_span().get_span_context().is_valid:
        parent = None  # the current context
    else:
        parent = remote_parent(traceparent)
    with OBSERVE.tracer.start_as_current_span(
        f"send {topic}",
        context=parent,
        kind=SpanKind.PRODUCER,
        attributes=_send_attributes(topic, event, service),
    ) as current:
        yield current


@contextlib.contextmanager
def server_span(scope: Mapping[str, Any]) -> Iterator[Span]:
    """The SERVER span of one HTTP request (an ASGI ``scope``), child of the request's
    ``traceparent`` header; named after its method until the route is known."""
    headers = {
        key.decode("latin-1").lower(): value.decode("latin-1")
        for key, value in scope.get("headers", ())
        if key.lower() in (b"traceparent", b"tracestate")
    }
    method = str(scope.get("method", "HTTP"))
    attributes: dict[str, AttributeValue] = {
        "http.request.method": method,
        "url.path": str(scope.get("path", "")),
        "url.scheme": str(scope.get("scheme", "http")),
    }
    with OBSERVE.tracer.start_as_current_span(
        method,
        context=_PROPAGATOR.extract(headers, otel_context.Context()),
        kind=SpanKind.SERVER,
        attributes=attributes,
    ) as current:
        yield current


def _send_attributes(topic: str, event: Event, service: str) -> dict[str, AttributeValue]:
    return {
        "messaging.system": "kafka",
        "messaging.operation.type": "send",
        "messaging.operation.name": "send",
        "messaging.destination.name": topic,
        "messaging.kafka.message.key": event.conversation_id,
        "messaging.message.id": event.metadata.event_id_text,
        "pipeline.service": service,
        **_event_attributes(event),
    }


def _event_attributes(event: Event) -> dict[str, AttributeValue]:
    return {
        "pipeline.conversation_id": event.conversation_id,
        "pipeline.event_id": event.metadata.event_id_text,
        "pipeline.event_type": event.type,
    }
