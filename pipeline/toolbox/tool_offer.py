"""What the agent offers the model: the tool catalog as the tools services advertise it.

:class:`CatalogOffer` follows the ``tool_catalog`` topic in the background and offers
every advertised tool, narrowed for a tenant listed in ``PIPELINE_TOOLS__TENANT_TOOLS``.
The console checks an operator's edited arguments against the same offer.

Start-up: the agent and the tools services start in any order, so right after start
the catalog may not be read yet, or still be empty because no tools service has
advertised. A turn then waits, at most ``catalog_wait_seconds`` after the agent
started, for a first tool to be advertised (the catalog is read every 0.2 s
meanwhile), and after that uses what the catalog holds, even nothing. Once the
catalog has a tool, or that time has passed, turns never wait for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterable
from typing import Protocol

from pipeline.config import Settings
from pipeline.llm.base import ToolSpec
from pipeline.runtime.publisher import Publisher
from pipeline.toolbox.catalog import CatalogFollower
from pipeline.toolbox.registry import Tool


class ToolOffer(Protocol):
    """The tools a turn of a tenant's conversation is offered."""

    async def tools_for(self, tenant_id: str) -> tuple[ToolSpec, ...]: ...


class CatalogOffer:
    """The advertised tools, per tenant; run :meth:`follow` as a background task."""

    def __init__(self, settings: Settings, follower: CatalogFollower | None = None) -> None:
        self.follower = follower or CatalogFollower(settings)
        self.tenant_tools = {t: frozenset(n) for t, n in settings.tools.tenant_tools.items()}
        self.wait_seconds = settings.tools.catalog_wait_seconds
        self._started: float | None = None

    async def follow(self, _: Publisher) -> None:
        """Read the catalog and keep reading it (the agent's background task)."""
        self._start()
        await self.follower.follow(fast_while_empty=self.wait_seconds)

    async def tools_for(self, tenant_id: str) -> tuple[ToolSpec, ...]:
        await self._settled()
        allowed = self.tenant_tools.get(tenant_id)
        return tuple(
            ToolSpec(e.name, e.description, e.parameters)
            for name, e in sorted(self.follower.entries.items())
            if allowed is None or name in allowed
        )

    async def _settled(self) -> None:
        started = self._start()
        while not self.follower.entries:
            remaining = started + self.wait_seconds - time.monotonic()
            if remaining <= 0:
                return
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):
                    await self.follower.wait_changed(self.follower.version)

    def _start(self) -> float:
        if self._started is None:
            self._started = time.monotonic()
        return self._started


class StaticOffer:
    """A fixed offer (tests, and services that build their agent without Kafka)."""

    def __init__(self, specs: Iterable[ToolSpec]) -> None:
        self.specs = tuple(sorted(specs, key=lambda s: s.name))

    @classmethod
    def of(cls, tools: Iterable[Tool]) -> StaticOffer:
        return cls(ToolSpec(t.name, t.description, dict(t.parameters)) for t in tools)

    async def tools_for(self, tenant_id: str) -> tuple[ToolSpec, ...]:
        return self.specs
