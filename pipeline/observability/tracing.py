"""W3C Trace Context (``traceparent``) carried in Kafka headers."""

from __future__ import annotations

import random
import re

_TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")


def child_traceparent(parent: str | bytes | None) -> str:
    """A traceparent for a new span: a child of ``parent`` if valid, else a new trace."""
    if isinstance(parent, bytes):
        parent = parent.decode("ascii", "replace")
    match = _TRACEPARENT.match(parent.strip()) if parent else None
    if match and (match.group(1) == "0" * 32 or match.group(2) == "0" * 16):
        match = None  # all-zero ids make the header invalid (W3C Trace Context §3.2.2)
    trace_id = match.group(1) if match else _random_hex(128)
    flags = match.group(3) if match else "01"
    return f"00-{trace_id}-{_random_hex(64)}-{flags}"


def _random_hex(bits: int) -> str:
    # Trace ids must be random, not secret: the fast generator is enough (W3C §3.2.2.3).
    value = 0
    while value == 0:  # all-zero ids are invalid
        value = random.getrandbits(bits)
    return f"{value:0{bits // 4}x}"


def trace_id(traceparent: str | bytes | None) -> str | None:
    if isinstance(traceparent, bytes):
        traceparent = traceparent.decode("ascii", "replace")
    match = _TRACEPARENT.match(traceparent) if traceparent else None
    return match.group(1) if match else None
