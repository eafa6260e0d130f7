"""An MCP tool server with a side effect, for the actions chaos runs (stdio).

``python -m tests.chaos.mcp_refund_server LEDGER [LATENCY]`` from the checkout's root: one
tool, ``refund_mcp``, which refunds an order once per idempotency key as a payment API
does, writing each execution to the ledger (:mod:`tests.chaos.side_effects`). The key is
read from the request's ``_meta``, where a caller passes it: the first entry whose name
contains ``idempotency`` (``idempotency_key``, ``idempotencyKey``, a namespaced
``…/idempotency-key``); the call id and attempt likewise, when present. Without a key every
execution takes effect. The server ends when its client closes stdin (the tools service
exiting, or killed).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mcp.server.mcpserver import Context, MCPServer

from tests.chaos.side_effects import record_execution

server = MCPServer("refunds", log_level="WARNING")
LEDGER = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("mcp-ledger.jsonl")
LATENCY = float(sys.argv[2]) if len(sys.argv) > 2 else 0.05


def meta_entry(meta: Mapping[str, Any] | None, *names: str) -> Any:
    """The value of the first ``_meta`` entry whose name, lowercased and without ``-`` or
    ``_``, contains one of ``names``."""
    for entry, value in (meta or {}).items():
        flat = entry.lower().replace("-", "").replace("_", "")
        if any(name in flat for name in names):
            return value
    return None


@server.tool()
async def refund_mcp(order_id: str, conversation: str, amount_cents: int, ctx: Context) -> str:
    """Refund an order (once per idempotency key)."""
    meta = ctx.request_context.meta
    await asyncio.sleep(LATENCY)
    key = meta_entry(meta, "idempotency")
    call_id = meta_entry(meta, "callid")
    attempt = meta_entry(meta, "attempt")
    await asyncio.to_thread(
        record_execution,
        LEDGER,
        "refund_mcp",
        {"order_id": order_id, "conversation": conversation, "amount_cents": amount_cents},
        call_id=None if call_id is None else str(call_id),
        key=None if key is None else str(key),
        attempt=attempt if isinstance(attempt, int) else None,
        deduplicate=True,
    )
    return f"refunded {order_id}"


if __name__ == "__main__":
    server.run("stdio")
