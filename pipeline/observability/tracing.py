"""W3C Trace Context (``traceparent``) carried in Kafka headers."""

from __future__ import annotations

import re
import secrets

_TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")


def child_traceparent(parent: str | bytes | None) -> str:
    """A traceparent for a new span: a child of ``parent`` if valid, else a new trace."""
    if isinstance(parent, bytes):
        parent = parent.decode("ascii", "replace")
    match = _TRACEPARENT.match(parent.strip()) if parent else None
    trace_id = match.group(1) if match and match.group(1) != "0" * 32 else secrets.token_hex(16)
    flags = match.group(3) if match else "01"
    return f"00-{trace_id}-{secrets.token_hex(8)}-{flags}"


def trace_id(traceparent: str | bytes | None) -> str | None:
    if isinstance(traceparent, bytes):
        traceparent = traceparent.decode("ascii", "replace")
    match = _TRACEPARENT.match(traceparent) if traceparent else None
    return match.group(1) if match else None
