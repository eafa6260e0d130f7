"""Spans of the tests: a tracer provider with an in-memory exporter, installed for one
test, and ways to read what it recorded."""

from __future__ import annotations

from collections.abc import Iterator

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from pipeline.observability import otel


def installed_exporter() -> Iterator[InMemorySpanExporter]:
    """Spans go to the yielded exporter while the generator is suspended (a fixture)."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    otel.install(provider)
    try:
        yield exporter
    finally:
        otel.uninstall()
        provider.shutdown()


def named(spans: Iterator[ReadableSpan] | tuple[ReadableSpan, ...], name: str) -> ReadableSpan:
    """The one span called ``name``."""
    found = [s for s in spans if s.name == name]
    assert len(found) == 1, f"{len(found)} spans named {name!r}"
    return found[0]


def ids(span: ReadableSpan) -> tuple[int, int]:
    """(trace id, span id) of a span."""
    assert span.context is not None
    return span.context.trace_id, span.context.span_id


def parent_ids(span: ReadableSpan) -> tuple[int, int]:
    """(trace id, span id) of a span's parent."""
    assert span.parent is not None, f"{span.name} has no parent"
    return span.parent.trace_id, span.parent.span_id


def traceparent(span: ReadableSpan) -> str:
    """The W3C traceparent naming ``span`` (its flags as the SDK set them)."""
    assert span.context is not None
    trace_id, span_id = ids(span)
    return f"00-{trace_id:032x}-{span_id:016x}-{int(span.context.trace_flags):02x}"
