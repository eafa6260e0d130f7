"""W3C Trace Context (``traceparent``) carried in Kafka headers."""

from __future__ import annotations

import random
import re

_TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")


def child_traceparent(parent: str | bytes | None) -> str:
    """A traceparent for a new span: a child of ``parent`` if valid, else a new trace."""
    if parent:
        if isinstance(parent, bytes):
            parent = parent.decode("ascii", "replace")
        match = _TRACEPARENT.match(parent.strip())
        # All-zero ids make the header invalid (W3C Trace Context §3.2.2).
        if match is not None and match[1] != _ZERO_TRACE and match[2] != _ZERO_SPAN:
            return f"00-{match[1]}-{_span_id()}-{match[3]}"
    return f"00-{_trace_id()}-{_span_id()}-01"


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
