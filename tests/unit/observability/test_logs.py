"""JSON log lines: every line a handler writes carries its conversation, its event and
the trace (and, with tracing on, the span) it belongs to."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from pipeline.events.model import Event
from pipeline.observability.logs import configure_logging, log_handler
from pipeline.observability.otel import OBSERVE
from pipeline.observability.tracing import parent_trace
from pipeline.runtime.context import Context
from pipeline.runtime.service import Service
from pipeline.testing import TestService
from tests.otel_support import ids, installed_exporter, named
from tests.unit.runtime_events import chat

PARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def chatty() -> Service:
    service = Service("chatty", emits=["response_ready"])

    @service.handler("message_received")
    async def answer(event: Event, ctx: Context) -> None:
        ctx.log.info("answering %s", event["text"])
        logging.getLogger("somewhere.else").warning("a library speaks")
        ctx.emit("response_ready", {"reply_to": event["reply_to"], "text": "ok"})

    return service


@pytest.fixture
def json_lines() -> Iterator[io.StringIO]:
    """JSON lines of the loggers the handler writes to, with the log context on."""
    stream = io.StringIO()
    handler = log_handler("json")
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(stream)
    loggers = [logging.getLogger("pipeline.runtime"), logging.getLogger("somewhere.else")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
    OBSERVE.log_context = True
    OBSERVE.update()
    try:
        yield stream
    finally:
        OBSERVE.log_context = False
        OBSERVE.update()
        for logger, level in zip(loggers, levels, strict=True):
            logger.removeHandler(handler)
            logger.setLevel(level)


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def handler_lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [
        ln
        for ln in lines(stream)
        if ln["message"].startswith("answering") or ln["logger"] == "somewhere.else"
    ]


async def test_handler_lines_carry_the_event_and_its_span(
    json_lines: io.StringIO,
) -> None:
    exporters = installed_exporter()
    spans: InMemorySpanExporter = next(exporters)
    try:
        async with TestService(chatty()) as svc:
            sent = await svc.send("message_received", chat("hi"), conversation_id="c9")
            await svc.next_output("response_ready")
    finally:
        exporters.close()
    trace_id, span_id = ids(named(spans.get_finished_spans(), "process message_received"))
    written = handler_lines(json_lines)
    assert [ln["message"] for ln in written] == ["answering hi", "a library speaks"]
    for line in written:
        assert line["conversation_id"] == "c9"
        assert line["event_id"] == str(sent.id)
        assert line["trace_id"] == f"{trace_id:032x}"
        assert line["span_id"] == f"{span_id:016x}"
    assert written[0]["level"] == "INFO" and written[0]["logger"] == "pipeline.runtime"
    assert written[1]["level"] == "WARNING"


async def test_without_tracing_lines_carry_the_trace_of_the_traceparent(
    json_lines: io.StringIO,
) -> None:
    assert not OBSERVE.tracing
    async with TestService(chatty()) as svc:
        sent = await svc.send("message_received", chat("hi"), traceparent=PARENT)
        await svc.next_output("response_ready")
    written = handler_lines(json_lines)
    assert len(written) == 2
    for line in written:
        assert line["event_id"] == str(sent.id)
        assert line["conversation_id"] == "conversation-1"
        assert line["trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736"
        assert "span_id" not in line
    assert parent_trace(PARENT) == ("4bf92f3577b34da6a3ce929d0e0e4736", "01")


def test_lines_outside_a_handler_carry_no_context_and_exceptions_are_kept() -> None:
    stream = io.StringIO()
    handler = log_handler("json")
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(stream)
    logger = logging.getLogger("pipeline.test_otel_logs")
    logger.addHandler(handler)
    try:
        try:
            raise ValueError("boom")
        except ValueError:
            logger.exception("it broke: %d", 42)
    finally:
        logger.removeHandler(handler)
    [line] = lines(stream)
    assert line["message"] == "it broke: 42"
    assert line["level"] == "ERROR"
    assert "ValueError: boom" in line["exception"]
    assert not {"trace_id", "span_id", "conversation_id", "event_id"} & line.keys()
    assert line["time"].endswith("+00:00")


def test_text_lines_are_as_before() -> None:
    stream = io.StringIO()
    handler = log_handler("text")
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(stream)
    logger = logging.getLogger("pipeline.test_otel_logs.text")
    logger.addHandler(handler)
    try:
        logger.warning("plain %s", "words")
    finally:
        logger.removeHandler(handler)
    assert stream.getvalue().rstrip().endswith(" WARNING pipeline.test_otel_logs.text: plain words")


@pytest.mark.parametrize(("level", "httpx_level"), [("INFO", logging.WARNING), ("DEBUG", 0)])
def test_httpx_request_lines_are_kept_for_debugging_only(level: str, httpx_level: int) -> None:
    root, httpx_logger = logging.getLogger(), logging.getLogger("httpx")
    saved = root.handlers[:], root.level, httpx_logger.level
    root.handlers.clear()
    httpx_logger.setLevel(logging.NOTSET)
    try:
        configure_logging(level, "text")
        assert httpx_logger.level == httpx_level
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
        httpx_logger.setLevel(saved[2])
