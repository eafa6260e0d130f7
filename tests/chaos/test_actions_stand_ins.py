"""The stand-ins of the actions chaos runs behave as the harness counts on (no broker).

The model answers the project's own OpenAI provider as a tool-using model would, with a
fresh tool-call id each time and one fingerprint per logical step; the ledger deduplicates
a keyed tool's executions by key across processes' restarts; the MCP refund server reads
the idempotency key from ``_meta``; the code tools write one line per execution.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from mcp import ClientSession, StdioServerParameters, stdio_client
from prometheus_client import CollectorRegistry

from pipeline.config.sections import LLMSettings
from pipeline.llm.base import ChatMessage, ChatRequest, ToolSpec
from pipeline.llm.openai import OpenAIProvider
from tests.chaos.actions_app import AT_MOST_ONCE, KEYED, PARAMETERS, refund_tools
from tests.chaos.model_stand_in import (
    FINAL_STEP,
    TOOL_STEP,
    ModelStandIn,
    read_model_log,
    refund_request,
)
from tests.chaos.side_effects import read_ledger, record_execution
from tests.paths import REPO

ARGUMENTS = {"order_id": "o1", "conversation": "c1", "amount_cents": 1200}


async def test_the_model_calls_the_named_tool_then_answers_naming_the_conversation(
    tmp_path: Path,
) -> None:
    log = tmp_path / "model.jsonl"
    user = ChatMessage("user", refund_request("c1", "o1", KEYED))
    offered = (ToolSpec(KEYED, "Refund an order.", PARAMETERS),)
    with ModelStandIn(log, latency=0.05) as model:
        provider = OpenAIProvider(
            LLMSettings(
                provider="openai",
                base_url=model.base_url,
                model="m",
                allowed_networks=["127.0.0.0/8"],  # the stand-in is on 127.0.0.1
            ),
            registry=CollectorRegistry(),
            service="test",
        )
        try:
            first = await provider.complete(ChatRequest((user,), tools=offered))
            again = await provider.complete(ChatRequest((user,), tools=offered))
            (call,) = first.tool_calls
            result = ChatMessage("tool", '{"refunded": "o1"}', tool_call_id=call.id)
            asked = ChatMessage("assistant", None, tool_calls=(call,))
            final = await provider.complete(ChatRequest((user, asked, result), tools=offered))
        finally:
            await provider.aclose()
    assert call.name == KEYED
    assert (call.arguments["order_id"], call.arguments["conversation"]) == ("o1", "c1")
    assert isinstance(call.arguments["amount_cents"], int)
    assert again.tool_calls[0].id != call.id  # a fresh id each time, as real models give
    assert final.text == "Refund of o1 for c1: done."
    tool_step, repeat, final_step = read_model_log(log)
    assert (tool_step.step, repeat.step, final_step.step) == (TOOL_STEP, TOOL_STEP, FINAL_STEP)
    assert tool_step.fingerprint == repeat.fingerprint != final_step.fingerprint
    assert tool_step.conversation == final_step.conversation == "c1"
    assert (tool_step.call_id, final_step.call_id) == (call.id, call.id)
    assert tool_step.offered and tool_step.end - tool_step.start >= 0.05


def test_the_ledger_deduplicates_by_key_only_when_asked(tmp_path: Path) -> None:
    ledger = tmp_path / "ledger.jsonl"
    assert record_execution(ledger, KEYED, ARGUMENTS, key="k1", deduplicate=True)
    assert not record_execution(ledger, KEYED, ARGUMENTS, key="k1", deduplicate=True)
    assert record_execution(ledger, KEYED, ARGUMENTS, key="k2", deduplicate=True)
    assert record_execution(ledger, AT_MOST_ONCE, ARGUMENTS, key="k1", deduplicate=False)
    with ledger.open("a") as file:
        file.write('{"tool": "refund_keyed", "conv')  # a process killed mid-write
    found = read_ledger(ledger)
    assert [(e.tool, e.key, e.deduplicated) for e in found] == [
        (KEYED, "k1", False),
        (KEYED, "k1", True),
        (KEYED, "k2", False),
        (AT_MOST_ONCE, "k1", False),
    ]
    assert found[0].conversation == "c1" and found[0].order_id == "o1"


async def test_the_code_tools_write_one_line_per_execution(tmp_path: Path) -> None:
    ledger = tmp_path / "ledger.jsonl"
    keyed, once = refund_tools(ledger, 0.0)
    assert (keyed.name, once.name) == (KEYED, AT_MOST_ONCE)
    assert await keyed(ARGUMENTS) == {"refunded": "o1", "status": "done"}
    await keyed(ARGUMENTS)
    await once(ARGUMENTS)
    # Called outside the tools service a tool gets no call's key (none, or a new one per
    # call once ToolContext exists): each execution takes effect.
    assert [(e.tool, e.deduplicated) for e in read_ledger(ledger)] == [
        (KEYED, False),
        (KEYED, False),
        (AT_MOST_ONCE, False),
    ]


async def test_the_mcp_server_takes_the_idempotency_key_from_meta(tmp_path: Path) -> None:
    ledger = tmp_path / "ledger.jsonl"
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "tests.chaos.mcp_refund_server", str(ledger), "0"],
        cwd=REPO,
    )
    async with (
        stdio_client(params) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        meta = {"idempotency_key": "k1", "call_id": "call-1", "attempt": 2}
        first = await session.call_tool("refund_mcp", ARGUMENTS, meta=meta)
        await session.call_tool("refund_mcp", ARGUMENTS, meta=meta)
        await session.call_tool("refund_mcp", ARGUMENTS)
    assert not first.is_error
    executions = read_ledger(ledger)
    assert [(e.key, e.call_id, e.attempt, e.deduplicated) for e in executions] == [
        ("k1", "call-1", 2, False),
        ("k1", "call-1", 2, True),
        (None, None, None, False),
    ]
    assert json.loads(ledger.read_text().splitlines()[0])["tool"] == "refund_mcp"
