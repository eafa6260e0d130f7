"""What every part of a running service shares: whether it is closing, and why it stops."""

from __future__ import annotations

import asyncio
import logging

log = logging.getLogger("pipeline.runtime")


class RunState:
    """``closing`` is set when the service stops fetching (shutdown); ``fatal`` holds the
    first failure the runtime cannot recover from, which stops the service without
    committing past it."""

    __slots__ = ("closing", "fatal", "name")

    def __init__(self, name: str) -> None:
        self.name = name
        self.closing = asyncio.Event()
        self.fatal: BaseException | None = None

    def fail(self, exc: BaseException) -> None:
        """Stop the service on ``exc`` (the first one wins)."""
        if self.fatal is None:
            log.error("service %s is stopping: %s", self.name, exc)
            self.fatal = exc

    async def closing_within(self, seconds: float) -> bool:
        """Wait ``seconds``; True as soon as the service starts closing."""
        try:
            await asyncio.wait_for(self.closing.wait(), timeout=seconds)
        except TimeoutError:
            return False
        return True
