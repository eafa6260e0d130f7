"""A small MCP tool server for the tests, written with the SDK's MCPServer (FastMCP before
mcp 2). Run it as a subprocess: ``python mcp_weather_server.py stdio`` or
``python mcp_weather_server.py http PORT`` (streamable HTTP on 127.0.0.1:PORT/mcp).

Tools: ``weather`` (a forecast per city), ``server_pid`` (so a test can kill it), ``wait``
(a call that takes its time), and
``add_tides``, which adds a ``tides`` tool and tells the client its tool list changed.
"""

from __future__ import annotations

import os
import sys

import anyio
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError

FORECASTS = {"Paris": "sunny, 24°C", "Oslo": "rain, 11°C"}

server = MCPServer("weather", log_level="WARNING")


@server.tool()
def weather(city: str) -> str:
    """Today's weather forecast for a city."""
    if city not in FORECASTS:
        raise ToolError(f"no forecast for {city}")
    return f"{city}: {FORECASTS[city]}"


@server.tool()
def server_pid() -> int:
    """The process id of this server."""
    return os.getpid()


@server.tool()
async def wait(seconds: float) -> str:
    """Wait this many seconds, then answer."""
    await anyio.sleep(seconds)
    return "waited"


def tides(port: str) -> str:
    """High tide today at a port."""
    return f"high tide at {port}: 14:05"


@server.tool()
async def add_tides(ctx: Context) -> str:
    """Add the tides tool and say that the tool list changed."""
    server.add_tool(tides)
    await ctx.session.send_tool_list_changed()
    return "added"


if __name__ == "__main__":
    if sys.argv[1:2] == ["http"]:
        server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[2]))
    else:
        server.run("stdio")
