"""A small MCP tool server for the tests of idempotency keys and guarantees, written with
the SDK's MCPServer. Run it as a subprocess: ``python mcp_ledger_server.py`` (stdio).

Tools: ``charge`` answers with the ``_meta`` of the request it received, so a test sees
the key that arrived; ``balance`` is annotated read-only and ``set_limit`` idempotent;
``refund`` has no annotations.
"""

from __future__ import annotations

from typing import Any

from mcp.server.mcpserver import Context, MCPServer
from mcp_types import ToolAnnotations

server = MCPServer("ledger", log_level="WARNING")
BALANCE = {"cents": 10_000}


@server.tool()
def charge(cents: int, ctx: Context) -> dict[str, Any]:
    """Charge an amount; the answer holds the request's _meta."""
    BALANCE["cents"] -= cents
    return {"charged": cents, "meta": dict(ctx.request_context.meta or {})}


@server.tool(annotations=ToolAnnotations(read_only_hint=True))
def balance() -> int:
    """The balance in cents."""
    return BALANCE["cents"]


@server.tool(annotations=ToolAnnotations(read_only_hint=False, idempotent_hint=True))
def set_limit(cents: int) -> str:
    """Set the spending limit."""
    return f"limit {cents}"


@server.tool()
def refund(cents: int) -> str:
    """Refund an amount."""
    BALANCE["cents"] += cents
    return f"refunded {cents}"


if __name__ == "__main__":
    server.run("stdio")
