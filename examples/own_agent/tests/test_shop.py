"""The shop's handler and tools, tested without a broker."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from pathlib import Path

import pytest
from own_agent.shop import service
from own_agent.tools import order_status

from pipeline.config.sections import McpServerSettings, ToolsSettings
from pipeline.testing import TestService
from pipeline.toolbox import Tool, ToolError
from pipeline.toolbox.mcp import McpServer

HERE = Path(__file__).resolve().parents[1]
SHIP_TO = {"channel": "web", "address": "https://shop.example.com/hook", "thread_id": None}


async def test_an_order_is_answered_in_its_conversation() -> None:
    folders = {"extra_schema_dirs": (HERE / "schemas",), "extra_topic_dirs": (HERE / "topics",)}
    async with TestService(service, **folders) as svc:
        body = {"order_id": "A-1001", "total_cents": 4599, "ship_to": SHIP_TO}
        await svc.send("order_placed", body, conversation_id="web:shop:ada")
        reply = await svc.next_output("response_ready")
    assert reply.conversation_id == "web:shop:ada"
    assert reply["text"].startswith("Thank you for order A-1001 (45.99 EUR).")
    assert reply["reply_to"] == SHIP_TO


async def test_the_order_status_tool() -> None:
    assert await order_status({"order_id": "A-1001"}) == {"order_id": "A-1001", "status": "shipped"}
    with pytest.raises(ToolError, match="no order 'B-7'"):
        await order_status({"order_id": "B-7"})


async def test_the_stock_server_serves_its_tool_over_mcp() -> None:
    params = McpServerSettings(
        command=sys.executable, args=[str(HERE / "own_agent" / "stock_server.py")]
    )
    listed: list[list[str]] = []

    def seen(server: McpServer, tools: list[Tool]) -> None:
        listed.append([t.name for t in tools])

    server = McpServer("stock", params, ToolsSettings(), seen)
    task = asyncio.create_task(server.run())
    try:
        await asyncio.wait_for(server.connected.wait(), 30)
        (stock_level,) = server.tools
        assert stock_level.name == "stock_level"
        assert await stock_level({"product": "kettle"}) == {"result": 12}
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert listed[0] == ["stock_level"]
