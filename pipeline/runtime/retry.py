"""Backoff between handler attempts."""

from __future__ import annotations

import random


def backoff_seconds(attempt: int, initial: float, maximum: float) -> float:
    """Exponential backoff with full jitter for the ``attempt``-th retry (1-based)."""
    ceiling = min(maximum, initial * 2 ** (attempt - 1))
    return random.uniform(ceiling / 2, ceiling)
