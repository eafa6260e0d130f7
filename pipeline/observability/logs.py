"""Log lines of a process: text (the default) or JSON with the context of the work at hand.

``PIPELINE_LOG_FORMAT=json`` writes one JSON object per line. Every line written while a
handler attempt runs carries the event's ``conversation_id`` and ``event_id`` and the
``trace_id`` and ``span_id`` it belongs to (the runtime sets them in :data:`LOG_FIELDS`
around each attempt); a line written inside a span (a gateway request, an LLM call) gets
that span's ids. Without tracing, the trace id is the one the event's ``traceparent``
header names, and no span id is given.
"""

from __future__ import annotations

import json
import logging
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, Literal, NamedTuple

from opentelemetry import trace

LogFormat = Literal["text", "json"]
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
CONTEXT_FIELDS = ("trace_id", "span_id", "conversation_id", "event_id")


class LogFields(NamedTuple):
    """What the runtime knows about the event being handled."""

    conversation_id: str
    event_id: str
    trace_id: str | None


LOG_FIELDS: ContextVar[LogFields | None] = ContextVar("pipeline_log_fields", default=None)


class ContextFilter(logging.Filter):
    """Adds ``trace_id``, ``span_id``, ``conversation_id`` and ``event_id`` to each record
    (None when unknown): from the current span and :data:`LOG_FIELDS`."""

    def filter(self, record: logging.LogRecord) -> bool:
        fields = LOG_FIELDS.get()
        span = trace.get_current_span().get_span_context()
        if span.is_valid:
            record.trace_id = trace.format_trace_id(span.trace_id)
            record.span_id = trace.format_span_id(span.span_id)
        else:
            record.trace_id = fields.trace_id if fields is not None else None
            record.span_id = None
        record.conversation_id = fields.conversation_id if fields is not None else None
        record.event_id = fields.event_id if fields is not None else None
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time (UTC, ISO 8601), level, logger, message, the
    context fields that are known, and the exception's traceback when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in CONTEXT_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                line[name] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return json.dumps(line, ensure_ascii=False, default=str)


def log_handler(log_format: LogFormat) -> logging.Handler:
    """A stderr handler writing ``log_format``."""
    handler = logging.StreamHandler()
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
        handler.addFilter(ContextFilter())
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    return handler


def configure_logging(level: str, log_format: LogFormat) -> None:
    """The process's root logger: ``level``, lines in ``log_format`` on stderr (unless
    logging was configured already, as :func:`logging.basicConfig` does)."""
    logging.basicConfig(level=level.upper(), handlers=[log_handler(log_format)])
    if logging.getLevelName(level.upper()) != logging.DEBUG:
        # httpx logs every request at INFO: the model client's and the channels' callers
        # log what matters of each, and a line per call costs a service hundreds of
        # formatted lines a second under load (a tenth of the agent's CPU).
        logging.getLogger("httpx").setLevel(logging.WARNING)
