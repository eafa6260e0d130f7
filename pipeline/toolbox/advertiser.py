"""Keeping the tool catalog topic equal to what one tools service serves.

The catalog holds one record per tool name, naming the service that serves it. Several
tools services (one per team, say) advertise side by side; a service:

- advertises each of its tools that nobody else advertises, or that it advertised
  itself (again when the spec changed), and tombstones those it no longer has (an MCP
  server went away, a plugin was removed since its last run);
- refuses a tool whose name another service advertises with a different spec, with a
  message naming both sources: at start for its built-in and plugin tools (the service
  exits), later, for MCP tools, by logging it and leaving the other service's tool be;
- leaves a tool advertised by another service with the same spec to that service.

Replicas of one service share its name, so they advertise the same records and never
clash with each other. The service answers a tool_called only for tools the catalog
says it serves, or that nobody serves (with an error result), so two tools services do
not both run one call.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from pipeline.errors import ConfigError, PipelineError
from pipeline.runtime.publisher import Publisher
from pipeline.toolbox.catalog import CatalogEntry, CatalogFollower
from pipeline.toolbox.registry import Tool, ToolRegistry

log = logging.getLogger(__name__)


class Advertiser:
    """Reconciles one service's tools with the catalog topic."""

    def __init__(
        self,
        service: str,
        registry: ToolRegistry,
        follower: CatalogFollower,
        *,
        enabled: list[str] | None = None,
    ) -> None:
        self.service = service
        self.registry = registry
        self.follower = follower
        self.enabled = None if enabled is None else set(enabled)
        self.refused: dict[str, str] = {}  # tool name -> why it is not advertised
        self.unavailable: dict[str, str] = {}  # withdrawn tool name -> why
        # MCP sources not yet tried since start: their tools advertised by an earlier run
        # stay in the catalog (and their calls wait) until the first attempt to connect.
        self.pending: dict[str, asyncio.Event] = {}  # source -> set when it reported
        self._published: dict[str, CatalogEntry | None] = {}
        self._changed = asyncio.Event()

    # ------------------------------------------------------------------ decisions

    def serves(self, name: str) -> bool:
        """Whether this service answers a tool_called for ``name``."""
        entry = self.follower.entries.get(name)
        if entry is not None:
            return entry.service == self.service
        return True  # nobody advertises it: answer, with the tool or with an error

    def expect_source(self, source: str) -> None:
        """``source`` (an MCP server) will report its tools: until it does, the tools it
        had in the catalog are neither withdrawn nor called unknown."""
        self.pending.setdefault(source, asyncio.Event())

    def awaited_source(self, name: str) -> str | None:
        """The source still expected at start that advertised ``name`` last, if any."""
        entry = self.follower.entries.get(name)
        if entry is None or entry.service != self.service or name in self.registry:
            return None
        return entry.source if entry.source in self.pending else None

    async def settled(self, source: str, seconds: float) -> bool:
        """Wait up to ``seconds`` for ``source``'s first report; whether it came."""
        waiting = self.pending.get(source)
        if waiting is None:
            return True
        try:
            async with asyncio.timeout(seconds):
                await waiting.wait()
        except TimeoutError:
            return False
        return True

    def why_missing(self, name: str) -> str | None:
        """Why a tool this service does not have now cannot be called, if it had it."""
        return self.unavailable.get(name)

    def plan(self, *, strict: bool) -> tuple[list[CatalogEntry], list[str]]:
        """(entries to advertise, names to withdraw); ConfigError on a clash when strict."""
        catalog = self.follower.entries
        advertise: list[CatalogEntry] = []
        clashes: list[str] = []
        refused: dict[str, str] = {}
        for tool in self.registry.tools():
            mine = CatalogEntry.of(tool, self.service)
            current = catalog.get(tool.name)
            if current is None or current.service == self.service:
                if current != mine and self._published.get(tool.name) != mine:
                    advertise.append(mine)
                continue
            if current.same_spec(mine):
                continue  # the same tool, served by the other service
            message = (
                f"tool {tool.name!r} from {mine.origin} is refused: {current.origin} "
                "already advertises a tool of that name with a different spec "
                "(rename one, or narrow PIPELINE_TOOLS__ENABLED)"
            )
            refused[tool.name] = message
            if strict and not tool.source.startswith("mcp:"):
                clashes.append(message)
            elif self.refused.get(tool.name) != message:
                log.error("%s", message)
        if clashes:
            raise ConfigError("; ".join(clashes))
        self.refused = refused
        withdraw = [
            name
            for name, entry in catalog.items()
            if entry.service == self.service
            and name not in self.registry
            and entry.source not in self.pending
            and self._published.get(name, entry) is not None
        ]
        return advertise, withdraw

    # ------------------------------------------------------------------ changes

    def replace_source(self, source: str, tools: list[Tool], why_gone: str) -> None:
        """Swap the tools of one source (an MCP server) for ``tools``; the catalog follows.

        A tool whose name another local source already uses is not served (logged);
        one left out by ``PIPELINE_TOOLS__ENABLED`` neither. A pending source is settled:
        its first attempt to connect is over.
        """
        settled = self.pending.pop(source, None)
        if settled is not None:  # what it served in an earlier run and lacks now
            listed = {t.name for t in tools}
            for name, entry in self.follower.entries.items():
                mine = entry.service == self.service and entry.source == source
                if mine and name not in listed:
                    self.unavailable[name] = why_gone
            settled.set()
        for old in [t for t in self.registry.tools() if t.source == source]:
            self.registry.unregister(old.name)
            if old.name not in {t.name for t in tools}:
                self.unavailable[old.name] = why_gone
        for tool in tools:
            if self.enabled is not None and tool.name not in self.enabled:
                continue
            existing = self.registry.get(tool.name)
            if existing is not None:
                log.error(
                    "tool %r of %s is not served: %s has a tool of that name",
                    tool.name,
                    source,
                    existing.source,
                )
                continue
            self.registry.register(tool)
            self.unavailable.pop(tool.name, None)
        self._changed.set()

    async def run(self, publisher: Publisher) -> None:
        """Read the catalog, advertise (refusing a clash at start), then keep it in step
        with the tools and with what other services advertise."""
        await self.follower.refresh()
        self._published = {
            n: e for n, e in self.follower.entries.items() if e.service == self.service
        }
        await self._reconcile(publisher, strict=True)
        interval = self.follower.settings.tools.catalog_refresh_seconds
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), interval)
            self._changed.clear()
            try:
                await self.follower.refresh()
                await self._reconcile(publisher, strict=False)
            except PipelineError as exc:
                log.warning("cannot update the tool catalog (%s); trying again", exc)
                self._changed.set()
                await asyncio.sleep(interval)

    async def _reconcile(self, publisher: Publisher, *, strict: bool) -> None:
        advertise, withdraw = self.plan(strict=strict)
        topic = self.follower.settings.tools.catalog_topic
        for entry in advertise:
            codec = self.follower.codec
            value = codec.encode(entry)
            await publisher.publish_record(topic, entry.name, value, headers=codec.headers())
            self._published[entry.name] = entry
            log.info("advertised tool %s (%s)", entry.name, entry.source)
        for name in withdraw:
            await publisher.publish_record(topic, name, None)
            self._published[name] = None
            log.info("withdrew tool %s from the catalog", name)
        if advertise or withdraw:
            await self.follower.refresh()
