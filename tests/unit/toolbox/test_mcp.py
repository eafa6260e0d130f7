"""MCP servers as a tool source, against a real MCP server (the SDK's MCPServer) run as a
subprocess over stdio: listing, calling, list-changed, a server that dies, and the
idempotency key and guarantees of its tools."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from pipeline.config.sections import McpServerSettings, ToolsSettings
from pipeline.tool_context import ToolContext
from pipeline.toolbox import AT_MOST_ONCE, IDEMPOTENT, KEYED, Tool, ToolError
from pipeline.toolbox.mcp import CALL_ID_META, IDEMPOTENCY_KEY_META, McpServer, stdio_command
from tests.paths import TESTS

SERVER = TESTS / "mcp_weather_server.py"
LEDGER = TESTS / "mcp_ledger_server.py"


class Seen:
    def __init__(self) -> None:
        self.lists: list[list[str]] = []
        self.changed = asyncio.Event()

    def __call__(self, server: McpServer, tools: list[Tool]) -> None:
        self.lists.append([t.name for t in tools])
        self.changed.set()

    async def next(self) -> list[str]:
        await asyncio.wait_for(self.changed.wait(), 30)
        self.changed.clear()
        return self.lists[-1]


@contextlib.asynccontextmanager
async def connected(
    seen: Seen, *, args: tuple[str, ...] = (str(SERVER), "stdio"), **config: object
) -> AsyncIterator[McpServer]:
    settings = ToolsSettings(mcp_retry_initial_seconds=0.1, mcp_ping_interval_seconds=0.3)
    params = McpServerSettings(command=sys.executable, args=list(args), **config)
    server = McpServer("wx", params, settings, seen)
    task = asyncio.create_task(server.run())
    try:
        await asyncio.wait_for(server.connected.wait(), 30)
        yield server
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def tool(server: McpServer, name: str) -> Tool:
    (found,) = [t for t in server.tools if t.name == name]
    return found


async def test_tools_are_listed_called_and_relisted_when_the_server_says_so() -> None:
    seen = Seen()
    async with connected(seen, prefix="wx_") as server:
        assert await seen.next() == ["wx_weather", "wx_server_pid", "wx_wait", "wx_add_tides"]
        weather = tool(server, "wx_weather")
        assert weather.source == "mcp:wx"
        assert weather.parameters["required"] == ["city"]
        assert await weather({"city": "Paris"}) == {"result": "Paris: sunny, 24°C"}
        with pytest.raises(ToolError, match="no forecast for Atlantis"):
            await weather({"city": "Atlantis"})
        await tool(server, "wx_add_tides")({})
        assert "wx_tides" in await seen.next()


async def test_a_dead_server_is_withdrawn_answers_with_an_error_and_comes_back() -> None:
    seen = Seen()
    async with connected(seen) as server:
        await seen.next()
        pid = await tool(server, "server_pid")({})
        waiting = asyncio.create_task(tool(server, "wait")({"seconds": 30}))
        await asyncio.sleep(0.2)
        os.kill(pid["result"], signal.SIGKILL)
        with pytest.raises(ToolError, match="the MCP server 'wx' failed"):
            await asyncio.wait_for(waiting, 30)
        assert await seen.next() == []
        with pytest.raises(ToolError, match="the MCP server 'wx' is not connected"):
            await server.call("weather", {"city": "Paris"})
        assert "weather" in await seen.next()  # reconnected: a new server process
        assert await tool(server, "weather")({"city": "Oslo"}) == {"result": "Oslo: rain, 11°C"}


async def test_a_first_attempt_that_fails_still_reports_no_tools() -> None:
    seen = Seen()
    settings = ToolsSettings(mcp_retry_initial_seconds=5, mcp_connect_timeout_seconds=5)
    params = McpServerSettings(command=sys.executable, args=["-c", "raise SystemExit(3)"])
    server = McpServer("gone", params, settings, seen)
    task = asyncio.create_task(server.run())
    try:
        assert await seen.next() == []  # heard once the attempt is over, not at success
        assert not server.connected.is_set()
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def test_python_as_a_stdio_command_is_the_interpreter_running_the_service() -> None:
    assert stdio_command("python") == sys.executable
    assert stdio_command("python3") == sys.executable
    assert stdio_command("/usr/bin/node") == "/usr/bin/node"
    assert stdio_command("python2") == "python2"


async def test_a_server_started_as_python_finds_the_services_packages(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first ``python`` on PATH is one without the ``mcp`` package (as a system python
    would be); ``"command": "python"`` still starts a server that imports it."""
    stranger = tmp_path / "python"
    stranger.write_text("#!/bin/sh\necho 'No module named mcp' >&2\nexit 1\n")
    stranger.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ.get('PATH', '')}")
    seen = Seen()
    params = McpServerSettings(command="python", args=[str(SERVER), "stdio"])
    server = McpServer("wx", params, ToolsSettings(mcp_retry_initial_seconds=0.1), seen)
    task = asyncio.create_task(server.run())
    try:
        await asyncio.wait_for(server.connected.wait(), 30)
        assert "weather" in [t.name for t in server.tools]
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_a_call_carries_its_idempotency_key_and_call_id_in_the_requests_meta() -> None:
    async with connected(Seen(), args=(str(LEDGER),)) as server:
        charge = tool(server, "charge")
        context = ToolContext("call-7", "5c1f7a0e-key", "charge", "web:acme:ada", "acme")
        answer = await charge({"cents": 250}, context)
        assert answer["charged"] == 250
        assert answer["meta"][IDEMPOTENCY_KEY_META] == "5c1f7a0e-key"
        assert answer["meta"][CALL_ID_META] == "call-7"


async def test_guarantees_follow_the_annotations_unless_the_settings_say_otherwise() -> None:
    overrides = {"refund": AT_MOST_ONCE, "balance": KEYED}
    async with connected(Seen(), args=(str(LEDGER),), prefix="l_", guarantees=overrides) as server:
        guarantees = {t.name: t.guarantee for t in server.tools}
    assert guarantees == {
        "l_charge": KEYED,  # no annotations
        "l_balance": KEYED,  # read-only, overridden by the settings
        "l_set_limit": IDEMPOTENT,  # idempotentHint
        "l_refund": AT_MOST_ONCE,  # no annotations, overridden
    }
    async with connected(Seen(), args=(str(LEDGER),)) as server:
        assert tool(server, "balance").guarantee == IDEMPOTENT  # readOnlyHint
