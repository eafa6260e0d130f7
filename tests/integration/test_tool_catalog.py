"""The tool catalog end to end on a real broker: a tool from an entry-point plugin and
tools from MCP servers (the SDK's MCPServer, one a subprocess over stdio, one over
streamable HTTP) are advertised by the tools service, offered to a model, called, and
their results answered; the same through the deterministic provider's ``/tool`` form;
an MCP server killed mid-call; a second tools service with a clashing name."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from pipeline.config import Settings
from pipeline.errors import ConfigError
from pipeline.runtime.service import Service
from pipeline.services import tools
from pipeline.services.agent import build
from pipeline.toolbox import Tool, build_registry
from pipeline.toolbox.catalog import CatalogFollower
from tests.integration.runtime_support import read_all_async, running, settings_for
from tests.integration.test_agent_openai import serve
from tests.integration.test_agent_pipeline import TOPICS, events_of, message, produce_in_order

SERVER = Path(__file__).resolve().parents[1] / "mcp_weather_server.py"
PLUGIN = """
from pipeline.toolbox import tool

@tool("moon_phase", "The moon's phase on a date.", {"date": {"type": "string"}})
async def moon_phase(args):
    return {"date": args["date"], "phase": "waxing gibbous"}
"""
MCP_TOOLS = {"weather", "server_pid", "add_tides", "wait"}
BUILTINS = {"calculator", "current_time", "knowledge_lookup"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """An installed distribution with a ``pipeline.tools`` entry point named ``moon``."""
    (tmp_path / "moon_tools.py").write_text(textwrap.dedent(PLUGIN))
    dist = tmp_path / "moon_tools-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: moon-tools\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[pipeline.tools]\nmoon = moon_tools:moon_phase\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    return "moon"


@pytest.fixture
def http_mcp() -> Iterator[str]:
    """The weather server over streamable HTTP, as a subprocess."""
    port = free_port()
    process = subprocess.Popen([sys.executable, str(SERVER), "http", str(port)])
    url = f"http://127.0.0.1:{port}/mcp"
    deadline = time.monotonic() + 30
    while True:
        try:
            httpx.get(f"http://127.0.0.1:{port}/", timeout=1)
            break
        except httpx.TransportError:
            assert time.monotonic() < deadline, "the MCP HTTP server did not start"
            assert process.poll() is None, "the MCP HTTP server exited"
            time.sleep(0.1)
    yield url
    process.terminate()
    process.wait(10)


def tools_settings(plugin: str, http_url: str) -> dict[str, Any]:
    return {
        "plugins": [plugin],
        "mcp_servers": {
            "wx": {"command": sys.executable, "args": [str(SERVER), "stdio"]},
            "web": {"url": http_url, "prefix": "web_", "allowed_networks": ["127.0.0.0/8"]},
        },
        "mcp_retry_initial_seconds": 0.2,
        "mcp_ping_interval_seconds": 0.5,
        "catalog_refresh_seconds": 0.2,
    }


async def catalog_with(settings: Settings, done: Callable[[set[str]], bool]) -> CatalogFollower:
    """Read the tool catalog until ``done(names)``."""
    follower = CatalogFollower(settings)
    deadline = time.monotonic() + 60
    while True:
        await follower.refresh()
        if done(set(follower.entries)):
            return follower
        assert time.monotonic() < deadline, f"catalog stayed at {sorted(follower.entries)}"
        await asyncio.sleep(0.2)


EVERY_TOOL = BUILTINS | MCP_TOOLS | {f"web_{t}" for t in MCP_TOOLS} | {"moon_phase"}


class Chat:
    """Messages into one conversation, replies read back in order."""

    def __init__(self, bootstrap: str, prefix: str, conversation: str) -> None:
        self.bootstrap, self.prefix, self.conversation = bootstrap, prefix, conversation
        self.sent = 0

    async def ask(self, text: str) -> str:
        self.sent += 1
        question = message(self.conversation, text, external_id=f"m{self.sent}")
        produce_in_order(self.bootstrap, self.prefix + "message_received", [question])
        records = await read_all_async(
            self.bootstrap,
            self.prefix + "response_ready",
            lambda r: len(r) >= self.sent,
            60,
        )
        answer = events_of(records)[-1]
        assert answer.metadata.correlation_id == question.id
        return str(answer["text"])


@contextlib.asynccontextmanager
async def pipeline(settings: Settings) -> AsyncIterator[Service]:
    service = tools.build(settings)
    async with running(build(settings)), running(service):
        yield service


async def test_a_model_is_offered_and_calls_plugin_and_mcp_tools(
    kafka_bootstrap: str,
    topic_prefix: str,
    make_topics: Callable[..., list[str]],
    plugin: str,
    http_mcp: str,
) -> None:
    make_topics(*TOPICS, partitions=2)
    offered: list[list[dict[str, Any]]] = []

    def answer(body: dict[str, Any]) -> dict[str, Any]:
        offered.append(body.get("tools") or [])
        last = body["messages"][-1]
        if last["role"] == "user" and last["content"] == "warm up":
            return {"role": "assistant", "content": "warm"}
        if last["role"] == "tool":
            results = [m["content"] for m in body["messages"] if m["role"] == "tool"]
            return {"role": "assistant", "content": " | ".join(results)}
        calls = [
            ("moon_phase", {"date": "2025-06-01"}),
            ("weather", {"city": "Paris"}),
            ("web_weather", {"city": "Oslo"}),
        ]
        return {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": f"call_{i}",
                    "type": "function",
                    "function": {"name": name, "arguments": json.dumps(arguments)},
                }
                for i, (name, arguments) in enumerate(calls)
            ],
        }

    with serve(answer) as base_url:
        settings = settings_for(
            kafka_bootstrap,
            topic_prefix,
            llm={
                "provider": "openai",
                "base_url": base_url,
                "model": "local",
                "api_key": "k",
                "allowed_networks": ["127.0.0.0/8"],
            },
            tools=tools_settings(plugin, http_mcp),
        )
        async with pipeline(settings):
            catalog = await catalog_with(settings, lambda names: names >= EVERY_TOOL)
            # The agent follows the catalog on its own (a read a second): wait until its
            # offer has caught up with what this reader saw, then take the turn.
            warm = Chat(kafka_bootstrap, topic_prefix, "conv-warm")
            deadline = time.monotonic() + 60
            while (
                not {t["function"]["name"] for t in (offered[-1] if offered else [])} >= EVERY_TOOL
            ):
                assert time.monotonic() < deadline, "the agent never offered every tool"
                await warm.ask("warm up")
            first = len(offered)
            text = await Chat(kafka_bootstrap, topic_prefix, "conv-model").ask("plan my day")
    assert "waxing gibbous" in text
    assert "Paris: sunny" in text
    assert "Oslo: rain" in text
    # What the model was offered is exactly what the tools service serves and advertises.
    served = {
        e.name: {"name": e.name, "description": e.description, "parameters": e.parameters}
        for e in catalog.entries.values()
    }
    model_saw = {t["function"]["name"]: t["function"] for t in offered[first]}
    # Beside them, the agent's own escalate tool (a handoff to a person), not a served one.
    assert model_saw.pop("escalate")["name"] == "escalate"
    assert model_saw == served
    assert set(served) == EVERY_TOOL
    assert catalog.entries["moon_phase"].source == "plugin:moon"
    assert catalog.entries["weather"].source == "mcp:wx"
    assert catalog.entries["web_weather"].source == "mcp:web"
    assert {e.service for e in catalog.entries.values()} == {"tools"}


async def test_the_tool_form_drives_any_tool_and_a_killed_mcp_server_comes_back(
    kafka_bootstrap: str,
    topic_prefix: str,
    make_topics: Callable[..., list[str]],
    plugin: str,
    http_mcp: str,
) -> None:
    make_topics(*TOPICS, partitions=2)
    settings = settings_for(kafka_bootstrap, topic_prefix, tools=tools_settings(plugin, http_mcp))
    chat = Chat(kafka_bootstrap, topic_prefix, "conv-form")
    async with pipeline(settings):
        await catalog_with(settings, lambda names: names >= EVERY_TOOL)
        moon = await chat.ask('/tool moon_phase {"date": "2025-06-01"}')
        assert "waxing gibbous" in moon
        assert "Paris: sunny" in await chat.ask('/tool weather {"city": "Paris"}')
        assert "Oslo: rain" in await chat.ask('/tool web_weather {"city": "Oslo"}')
        refused = await chat.ask("/tool weather {}")
        assert refused == (
            "The arguments of weather do not fit its schema: "
            "arguments: 'city' is a required property."
        )
        # The server says its tools changed: the new one is advertised.
        assert "added" in await chat.ask("/tool add_tides")
        await catalog_with(settings, lambda names: "tides" in names)
        assert "high tide at Brest" in await chat.ask('/tool tides {"port": "Brest"}')

        # Killed in the middle of a call: an error result, the service keeps serving,
        # the server's tools are withdrawn, and they come back with the server.
        pid = json.loads((await chat.ask("/tool server_pid")).split(" returned ", 1)[1][:-1])
        waiting = asyncio.create_task(chat.ask('/tool wait {"seconds": 30}'))
        await read_all_async(
            kafka_bootstrap,
            topic_prefix + "tool_called",
            lambda r: any(x.event()["tool"] == "wait" for x in r),
            30,
        )
        os.kill(pid["result"], signal.SIGKILL)
        failed = await waiting
        assert failed.startswith("Sorry, the wait tool failed (error): ")
        assert "wx" in failed
        after = await catalog_with(settings, lambda names: not names & MCP_TOOLS)
        assert "web_weather" in after.entries  # the other server's tools stay
        assert await chat.ask('/tool calculator {"expression": "2+3"}') == "2+3 = 5"
        await catalog_with(settings, lambda names: names >= MCP_TOOLS)
        assert "Oslo: rain" in await chat.ask('/tool weather {"city": "Oslo"}')


async def test_a_second_tools_service_with_a_clashing_tool_is_refused(
    kafka_bootstrap: str,
    topic_prefix: str,
    make_topics: Callable[..., list[str]],
    plugin: str,
) -> None:
    make_topics(
        "tool_called", "tool_result", "dead_letters", "tool_catalog", "tools_journal", partitions=1
    )
    first = settings_for(kafka_bootstrap, topic_prefix, tools={"plugins": [plugin]})
    second = settings_for(kafka_bootstrap, topic_prefix, service_name="tools-b")
    other_moon = Tool(
        "moon_phase",
        "Another moon.",
        lambda args: "full",
        {"type": "object", "properties": {"when": {"type": "string"}}},
        source="plugin:other_moon",
    )
    registry = build_registry(second.tools, extra=[other_moon], entry_points=False)
    async with running(tools.build(first)):
        await catalog_with(first, lambda names: "moon_phase" in names)
        with pytest.raises(ConfigError) as refused:
            await asyncio.wait_for(tools.build(second, registry=registry).run(), 60)
        catalog = await catalog_with(first, lambda names: "moon_phase" in names)
    message = str(refused.value)
    assert "plugin:other_moon of tools service 'tools-b'" in message
    assert "plugin:moon of tools service 'tools'" in message
    assert "different spec" in message
    assert catalog.entries["moon_phase"].description == "The moon's phase on a date."
    # The same spec from another service is no clash: calculator stays with its first server.
    assert catalog.entries["calculator"].service == "tools"
