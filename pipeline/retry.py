"""Retrying: exponential backoff with jitter, and the wait a server asks for.

The one retry helper of the package: the runtime between handler attempts, delivery
between sends to a channel, and the OpenAI-compatible client between chat-completion
requests all use it. It imports nothing from the package, so every layer may.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime


def backoff_seconds(attempt: int, initial: float, maximum: float) -> float:
    """Exponential backoff for the ``attempt``-th retry (1-based): doubling from
    ``initial`` up to ``maximum``, jittered into the upper half of that ceiling, so that
    clients recovering from one outage do not come back in lockstep."""
    ceiling = min(maximum, initial * 2 ** (attempt - 1))
    return random.uniform(ceiling / 2, ceiling)


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value: delta-seconds or an HTTP date.

    None when absent or unreadable; a date in the past waits 0 s.
    """
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # RFC 9110 dates are GMT; a naive result means "-0000"
        return None
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """``max_attempts`` tries at most; between them, ``delay(attempt, retry_after)``."""

    max_attempts: int
    initial_seconds: float
    max_seconds: float
    retry_after_max_seconds: float

    def exhausted(self, attempt: int) -> bool:
        """Whether failed ``attempt`` (1-based) was the last one allowed."""
        return attempt >= self.max_attempts

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait after failed ``attempt`` (1-based): :func:`backoff_seconds`,
        or the server's ``Retry-After`` when that is longer (capped at
        ``retry_after_max_seconds``, so that one server cannot park a caller for hours).
        """
        delay = backoff_seconds(attempt, self.initial_seconds, self.max_seconds)
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.retry_after_max_seconds))
        return delay
