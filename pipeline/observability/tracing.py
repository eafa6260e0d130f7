"""W3C Trace Context (``traceparent``) carried in Kafka headers."""

from __future__ import annotations

import random
import re

_TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")


def child_traceparent(parent: str | bytes | None) -> str:
    """A traceparent for a new span: a child of ``parent`` if valid, else a new trace."""
    trace = parent_trace(parent)
    if trace is not None:
        return f"00-{trace[0]}-{_span_id()}-{trace[1]}"
    return f"00-{_trace_id()}-{_span_id()}-01"


def parent_trace(parent: str | bytes | None) -> tuple[str, str] | None:
    """(trace id, flags) of a valid traceparent, or None."""
    if not parent:
        return None
    if isinstance(parent, bytes):
        parent = parent.decode("ascii", "replace")
    match = _TRACEPARENT.match(parent.strip())
    # All-zero ids make the header invalid (W3C Trace Context §3.2.2).
    if match is None or match[1] == _ZERO_TRACE or match[2] == _ZERO_SPAN:
        return None
    return match[1], match[3]


def event_traceparent(trace: tuple[str, str], event_id: str) -> str:
    """The traceparent of the span that produced an event: in ``trace``, with a span id
    taken from the event's id (its last 16 hex digits), so a repeat of the event after a
    crash carries the same traceparent, as it carries the same id."""
    return f"00-{trace[0]}-{event_id[19:23]}{event_id[24:]}-{trace[1]}"


def trace_from_id(uuid_text: str) -> tuple[str, str]:
    """A sampled trace whose id is a UUID's 32 hex digits: the trace of a chain of events
    that arrived without trace context, named after the chain's correlation id."""
    return uuid_text.replace("-", "").lower(), "01"


_ZERO_TRACE = "0" * 32
_ZERO_SPAN = "0" * 16


def _span_id() -> str:
    # Ids must be random, not secret: the fast generator is enough (W3C §3.2.2.3). An
    # all-zero id is invalid, hence ``or 1``.
    return f"{random.getrandbits(64) or 1:016x}"


def _trace_id() -> str:
    return f"{random.getrandbits(128) or 1:032x}"


def trace_id(traceparent: str | bytes | None) -> str | None:
    if isinstance(traceparent, bytes):
        traceparent = traceparent.decode("ascii", "replace")
    match = _TRACEPARENT.match(traceparent) if traceparent else None
    return match.group(1) if match else None
