"""An MCP server's URL through the egress policy (:mod:`pipeline.egress`).

The ``mcp`` SDK speaks ``httpx2``, so the HTTP client of a streamable-HTTP server is an
``httpx2.AsyncClient`` whose transport checks every request first: its origin must be
the configured URL's (the SDK follows redirects only within it; one elsewhere is
refused here too), and every address the host resolves to must be public or in the
server's ``allowed_networks``. The environment's proxy is never used. The connection
itself is then made by httpx2, which looks the name up again: a DNS answer that changes
in between could still redirect it, which the delivery and tool clients (which connect
to the checked address) rule out.
"""

from __future__ import annotations

import httpx2
from mcp.shared._httpx_utils import MCP_DEFAULT_SSE_READ_TIMEOUT, MCP_DEFAULT_TIMEOUT

from pipeline.config.sections import McpServerSettings
from pipeline.egress import EgressPolicy, Resolver, parse_ip_literal, system_resolve
from pipeline.errors import EgressRefused


class CheckedTransport(httpx2.AsyncBaseTransport):
    """httpx2's transport behind the policy's checks of origin and addresses."""

    def __init__(self, policy: EgressPolicy, resolve: Resolver = system_resolve) -> None:
        self.policy = policy
        self._resolve = resolve
        self._inner = httpx2.AsyncHTTPTransport(trust_env=False)

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        url = str(request.url)
        refusal = self.policy.check_origin(url) or self.policy.check_url(url)
        if refusal is not None:
            raise EgressRefused(refusal)
        host, port = request.url.host, request.url.port or 0
        literal = parse_ip_literal(host)
        for address in [literal] if literal is not None else await self._resolve(host, port):
            reason = self.policy.check_address(address)
            if reason is not None:
                raise EgressRefused(f"MCP host {host!r} resolves to a {reason} address")
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()


def mcp_http_client(config: McpServerSettings) -> httpx2.AsyncClient:
    """The HTTP client of a streamable-HTTP MCP server: its headers, the SDK's timeouts,
    the egress policy of its URL and ``allowed_networks``, no proxy."""
    assert config.url is not None
    policy = EgressPolicy.for_destinations([config.url], config.allowed_networks)
    return httpx2.AsyncClient(
        transport=CheckedTransport(policy),
        headers={k: v.get_secret_value() for k, v in config.headers.items()} or None,
        timeout=httpx2.Timeout(MCP_DEFAULT_TIMEOUT, read=MCP_DEFAULT_SSE_READ_TIMEOUT),
        trust_env=False,
    )
