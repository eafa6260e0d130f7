"""Kafka outages where operators look: a banner on every page while the console cannot
reach Kafka, saying since when (what the pages show is as it was then), and the same
news on the live stream, so that an open page shows or hides it without a reload.

The console keeps serving while Kafka is down: its view is in memory, so the pages still
answer, from what was read before the outage; what needs Kafka (an action, the dead
letters, a timeline) says it cannot be done now instead of failing. Whether Kafka
answers is the readiness check's last answer
(:class:`~pipeline.http.readiness.KafkaReadiness`, every two seconds).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime

from pipeline.http.readiness import KafkaReadiness
from pipeline.services.console.view import ConsoleView


@dataclass(frozen=True, slots=True)
class Outage:
    """Kafka has not answered the console since ``since``."""

    since: datetime

    @property
    def banner(self) -> str:
        """What every page says while it lasts."""
        return (
            f"Kafka unreachable since {self.since:%Y-%m-%d %H:%M:%S} UTC: what this page "
            "shows is as it was then (stale), and actions cannot be stored until Kafka "
            "is back."
        )


class OutageWatch:
    """The current outage, if any; :meth:`run` wakes the live streams when one begins or
    ends (they then tell their pages)."""

    def __init__(self, readiness: KafkaReadiness, view: ConsoleView) -> None:
        self.readiness = readiness
        self.view = view

    def current(self) -> Outage | None:
        since = self.readiness.unreachable_since
        return None if since is None else Outage(since)

    def banner(self) -> str:
        """The banner's text, or "" while Kafka answers."""
        outage = self.current()
        return "" if outage is None else outage.banner

    async def run(self) -> None:
        """Until cancelled: wake the live streams whenever Kafka stops or starts answering."""
        down = self.current() is not None
        while True:
            await asyncio.sleep(self.readiness.interval / 2)
            now = self.current() is not None
            if now != down:
                down = now
                await self.view.changed()
