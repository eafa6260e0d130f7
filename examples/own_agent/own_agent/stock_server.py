"""The warehouse's stock, as an MCP tool server (the official SDK's server).

The tools service starts it as a subprocess over stdio when
``PIPELINE_TOOLS__MCP_SERVERS='{"stock": {"command": "python", "args": ["-m",
"own_agent.stock_server"]}}'``; its ``stock_level`` tool joins the catalog.
"""

from __future__ import annotations

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

STOCK = {"kettle": 12, "teapot": 0}

server = MCPServer("stock", log_level="WARNING")


@server.tool()
def stock_level(product: str) -> int:
    """How many of a product the warehouse holds."""
    if product not in STOCK:
        raise ToolError(f"no product {product!r}")
    return STOCK[product]


if __name__ == "__main__":
    server.run("stdio")
