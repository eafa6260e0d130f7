"""Request rates kept in this process's memory: moving windows of the ``limits`` library.

A rate is one or more limits in its notation (``"20/second;600/minute"``). A request
counts against a set of (limit, key) pairs at once: either it is within every one and
counts once against each, or it is over one and counts against none, and the caller
answers 429 with the seconds until the request would be allowed. With N replicas a key
gets up to N times its rate. The gateway's tenant rates and the console's sign-in
attempts are the two users.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from dataclasses import dataclass

from limits import RateLimitItem, WindowStats, parse_many
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter


def parse_rate(text: str) -> list[RateLimitItem]:
    """The limits of ``"20/second;600/minute"`` (ValueError when it is not that notation)."""
    return parse_many(text)


@dataclass(frozen=True, slots=True)
class OverLimit:
    """The first limit a request was over: which, for which key, and the seconds to wait."""

    limit: RateLimitItem
    key: str
    retry_after: int


class RateLimiter:
    """Moving windows per (limit, key) in memory."""

    def __init__(self) -> None:
        self._limiter = MovingWindowRateLimiter(MemoryStorage())

    def spend(self, wanted: Iterable[tuple[RateLimitItem, str]]) -> OverLimit | None:
        """Count one request against each (limit, key) of ``wanted``, or, when one of
        them is used up, against none: the first such one, with the seconds until it
        frees up."""
        pairs = list(dict.fromkeys(wanted))
        for limit, key in pairs:
            if not self._limiter.test(limit, key):
                reset = self._limiter.get_window_stats(limit, key).reset_time
                return OverLimit(limit, key, max(1, math.ceil(reset - time.time())))
        for limit, key in pairs:
            self._limiter.hit(limit, key)
        return None

    def get_window_stats(self, limit: RateLimitItem, key: str) -> WindowStats:
        """What is left of ``limit`` for ``key``, and when its window resets."""
        return self._limiter.get_window_stats(limit, key)
