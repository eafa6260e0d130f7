"""MCP tool servers as a tool source, through the official ``mcp`` SDK.

Each configured server (``PIPELINE_TOOLS__MCP_SERVERS``) gets one :class:`McpServer`,
whose :meth:`~McpServer.run` task keeps a ``ClientSession`` open: a subprocess over
stdio (``stdio_client``) or a streamable-HTTP endpoint (``streamable_http_client``,
through the egress policy: :mod:`pipeline.toolbox.mcp_egress`).
Connected, it lists the server's tools (every page) and hands them to ``on_tools``;
a ``notifications/tools/list_changed`` from the server lists them again. The server
is pinged every ``mcp_ping_interval_seconds``; when the connection fails (the process
died, the endpoint is down, a ping goes unanswered) its tools are withdrawn
(``on_tools`` with none) and it is connected again after a backoff that doubles up to
``mcp_retry_max_seconds``. The first attempt always ends in an ``on_tools`` call, even
with no tools, so whoever waits for the server's tools at start hears that it is over.
Nothing here ends the service: a call to a server that is down is a :class:`ToolError`,
which the tools service returns as an error result.

A call carries the call's idempotency key and call id in the request's ``_meta``
(:data:`IDEMPOTENCY_KEY_META`, :data:`CALL_ID_META`), where a server that deduplicates
finds them. A tool's guarantee comes from its annotations (:func:`guarantee_of`):
``readOnlyHint`` or ``idempotentHint`` true make it ``idempotent``, anything else
``keyed``; the server's ``guarantees`` setting overrides it per tool.

A stdio ``command`` of ``python`` (or ``python3``) starts the interpreter that runs the
tools service (``sys.executable``), not whichever ``python`` comes first on ``PATH``: a
server module installed next to the service is then found, as it would be by
``python -m`` from the service's own environment.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any, cast

import mcp_types
from mcp import ClientSession, StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from pipeline.config.sections import McpServerSettings, ToolsSettings
from pipeline.errors import ConfigError, ToolError
from pipeline.tool_context import ToolContext
from pipeline.toolbox.guarantee import IDEMPOTENT, KEYED, Guarantee
from pipeline.toolbox.mcp_egress import mcp_http_client
from pipeline.toolbox.registry import Tool

log = logging.getLogger(__name__)

ToolsCallback = Callable[["McpServer", list[Tool]], None]

RUNNING_INTERPRETER_NAMES = frozenset({"python", "python3"})
"""Stdio commands that mean the interpreter running the tools service."""

IDEMPOTENCY_KEY_META = "io.kafka-agent-pipeline/idempotency-key"
"""The ``_meta`` key of a call's idempotency key (a prefixed key, as MCP asks of them)."""
CALL_ID_META = "io.kafka-agent-pipeline/call-id"
"""The ``_meta`` key of the model's id for the call."""


def stdio_command(command: str) -> str:
    """The executable to start for a stdio server's ``command``: ``sys.executable`` for
    ``python`` and ``python3``, anything else as given."""
    if command in RUNNING_INTERPRETER_NAMES and sys.executable:
        return sys.executable
    return command


def guarantee_of(remote: mcp_types.Tool, overrides: Mapping[str, Guarantee]) -> Guarantee:
    """A server's tool's guarantee: the ``overrides`` entry of its name, else
    ``idempotent`` when its annotations say it only reads or is idempotent, else ``keyed``."""
    if remote.name in overrides:
        return overrides[remote.name]
    hints = remote.annotations
    if hints is not None and (hints.read_only_hint or hints.idempotent_hint):
        return IDEMPOTENT
    return KEYED


class McpServer:
    """One configured MCP server: its connection, its tools, and calls to them."""

    def __init__(
        self, name: str, config: McpServerSettings, settings: ToolsSettings, on_tools: ToolsCallback
    ) -> None:
        self.name = name
        self.config = config
        self.settings = settings
        self.source = f"mcp:{name}"
        self.on_tools = on_tools
        self.tools: list[Tool] = []
        self.connected = asyncio.Event()
        self.last_error = "not connected yet"
        self._session: ClientSession | None = None
        self._relist = asyncio.Event()
        self._broken: BaseException | None = None
        self._reported = False  # on_tools called at least once

    # ------------------------------------------------------------------ connection

    async def run(self) -> None:
        """Stay connected until cancelled: connect, list, watch; on failure withdraw and
        try again after the backoff."""
        delay = self.settings.mcp_retry_initial_seconds
        while True:
            try:
                await self._connect_and_watch()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.last_error = _describe(exc)
            finally:
                if self.connected.is_set():  # it was up: the next attempt starts fresh
                    delay = self.settings.mcp_retry_initial_seconds
                self._session = None
                self.connected.clear()
                if self.tools or not self._reported:
                    self._report([])
            log.warning(
                "MCP server %s is unavailable (%s); its tools are withdrawn; retrying in %.1fs",
                self.name,
                self.last_error,
                delay,
            )
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.settings.mcp_retry_max_seconds)

    async def _connect_and_watch(self) -> None:
        timeout = self.settings.mcp_connect_timeout_seconds
        self._broken = None
        async with (
            self._transport() as (read, write),
            ClientSession(read, write, message_handler=self._on_message) as session,
        ):
            await asyncio.wait_for(session.initialize(), timeout)
            await asyncio.wait_for(self._list(session), timeout)
            self._session = session
            self.connected.set()
            log.info(
                "MCP server %s connected: %s", self.name, ", ".join(t.name for t in self.tools)
            )
            await self._watch(session)

    @contextlib.asynccontextmanager
    async def _transport(self) -> AsyncIterator[tuple[Any, Any]]:
        config = self.config
        if config.command is not None:
            params = StdioServerParameters(
                command=stdio_command(config.command),
                args=list(config.args),
                env={k: v.get_secret_value() for k, v in config.env.items()} or None,
                cwd=config.cwd,
            )
            async with stdio_client(params, errlog=sys.__stderr__ or sys.stderr) as streams:
                yield streams[0], streams[1]
            return
        assert config.url is not None
        async with (
            mcp_http_client(config) as http,  # through the egress policy
            streamable_http_client(config.url, http_client=http) as streams,
        ):
            yield streams[0], streams[1]

    async def _watch(self, session: ClientSession) -> None:
        """Until the connection fails: list again when asked, ping when idle."""
        interval = self.settings.mcp_ping_interval_seconds
        while True:
            try:
                await asyncio.wait_for(self._relist.wait(), interval)
            except TimeoutError:
                await asyncio.wait_for(session.send_ping(), interval)
            if self._broken is not None:
                raise self._broken
            if self._relist.is_set():
                self._relist.clear()
                await asyncio.wait_for(
                    self._list(session), self.settings.mcp_connect_timeout_seconds
                )

    async def _on_message(self, message: Any) -> None:
        """Notifications from the server; runs on the session's reader, so only flags."""
        if isinstance(message, mcp_types.ToolListChangedNotification):
            log.info("MCP server %s says its tools changed; listing them again", self.name)
            self._relist.set()
        elif isinstance(message, Exception):
            self._broken = message
            self._relist.set()  # wakes the watcher, which raises it

    async def _list(self, session: ClientSession) -> None:
        listed: list[mcp_types.Tool] = []
        cursor: str | None = None
        for _ in range(100):  # a server that pages forever cannot hang the service
            page = await session.list_tools(
                params=mcp_types.PaginatedRequestParams(cursor=cursor) if cursor else None
            )
            listed.extend(page.tools)
            cursor = page.next_cursor
            if not cursor:
                break
        tools = [t for t in (self._tool(remote) for remote in listed) if t is not None]
        if not self._reported or [
            (t.name, t.description, t.parameters, t.guarantee) for t in tools
        ] != [(t.name, t.description, t.parameters, t.guarantee) for t in self.tools]:
            self._report(tools)

    def _report(self, tools: list[Tool]) -> None:
        self.tools = tools
        self._reported = True
        self.on_tools(self, tools)

    def _tool(self, remote: mcp_types.Tool) -> Tool | None:
        remote_name = remote.name

        async def call(arguments: Mapping[str, Any], context: ToolContext) -> Any:
            return await self.call(remote_name, arguments, context)

        try:
            return Tool(
                self.config.prefix + remote.name,
                remote.description or remote.title or remote.name,
                call,
                remote.input_schema,
                source=self.source,
                guarantee=guarantee_of(remote, self.config.guarantees),
            )
        except ConfigError as exc:
            log.warning("MCP server %s: tool %r not offered: %s", self.name, remote.name, exc)
            return None

    # ------------------------------------------------------------------ calls

    async def call(
        self, remote_name: str, arguments: Mapping[str, Any], context: ToolContext | None = None
    ) -> Any:
        """Call one of the server's tools; ToolError when it is down or the tool failed.

        ``context``'s idempotency key and call id go in the request's ``_meta``. The tools
        service's deadline and concurrency limit wrap this call.
        """
        session = self._session
        if session is None:
            raise ToolError(
                f"the MCP server {self.name!r} is not connected ({self.last_error}); "
                "try again later"
            )
        try:
            result = await session.call_tool(remote_name, dict(arguments), meta=_meta(context))
        except MCPError as exc:
            raise ToolError(f"the MCP server {self.name!r} failed: {exc.error.message}") from None
        if result.is_error:
            raise ToolError(_text(result.content) or f"{remote_name} failed on {self.name}")
        if result.structured_content is not None:
            return result.structured_content
        text = _text(result.content)
        if text is not None:
            return {"text": text}
        return {"content": [c.model_dump(mode="json", by_alias=True) for c in result.content]}


def mcp_servers(settings: ToolsSettings, on_tools: ToolsCallback) -> list[McpServer]:
    """One :class:`McpServer` per configured server, not yet connected."""
    return [McpServer(n, c, settings, on_tools) for n, c in sorted(settings.mcp_servers.items())]


def _meta(context: ToolContext | None) -> mcp_types.RequestParamsMeta | None:
    if context is None:
        return None
    meta = {IDEMPOTENCY_KEY_META: context.idempotency_key, CALL_ID_META: context.call_id}
    # An open TypedDict (PEP 728's extra_items), which mypy does not read yet.
    return cast(mcp_types.RequestParamsMeta, meta)


def _text(content: list[mcp_types.ContentBlock]) -> str | None:
    """The blocks' text joined, when every block is text."""
    if not content or not all(isinstance(c, mcp_types.TextContent) for c in content):
        return None
    return "\n".join(c.text for c in content if isinstance(c, mcp_types.TextContent))


def _describe(exc: BaseException) -> str:
    if isinstance(exc, MCPError):
        return exc.error.message
    if isinstance(exc, BaseExceptionGroup):
        return "; ".join(_describe(e) for e in exc.exceptions)
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
