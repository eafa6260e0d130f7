"""When to try a send again: exponential backoff with jitter, at least what the channel asked."""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.config.sections import DeliverySettings
from pipeline.runtime.retry import backoff_seconds


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """``max_attempts`` sends at most; between them, ``delay(attempt, retry_after)``."""

    max_attempts: int
    initial_seconds: float
    max_seconds: float
    retry_after_max_seconds: float

    @classmethod
    def from_settings(cls, settings: DeliverySettings) -> RetryPolicy:
        return cls(
            settings.max_attempts,
            settings.backoff_initial_seconds,
            settings.backoff_max_seconds,
            settings.retry_after_max_seconds,
        )

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait after failed ``attempt`` (1-based).

        Backoff doubles from ``initial_seconds`` up to ``max_seconds``, jittered into its
        upper half so that receivers recovering from an outage are not hit in lockstep. A
        ``Retry-After`` from the channel is a floor (capped at ``retry_after_max_seconds``,
        so that one receiver cannot park a handler for hours).
        """
        delay = backoff_seconds(attempt, self.initial_seconds, self.max_seconds)
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.retry_after_max_seconds))
        return delay
