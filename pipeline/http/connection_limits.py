"""What one HTTP connection is allowed: time to send its headers, and a place among a cap.

uvicorn times out an idle kept-alive connection (``timeout_keep_alive``) but not one
that opened, or started a request, and never finished its headers: a client sending a
header byte now and then holds its socket forever. The servers' protocols (uvicorn's
httptools one, :class:`GuardedHttpToolsProtocol`, or its h11 one,
:class:`GuardedH11Protocol`; the ``parser`` setting) arm a timer when a connection opens
and when a new request begins after an answer, and disarm it when the request's headers
are complete (uvicorn then starts the request's cycle); when it fires, the connection is
answered 408 and closed.

uvicorn's ``limit_concurrency`` answers past its cap with a bare ``Service Unavailable``;
here a request on a connection past ``max_connections`` is answered 503 with the reason
and ``Retry-After``, and its connection closed, so a client learns what happened.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import uvicorn
from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.server import ServerState

from pipeline.config.sections import HttpServerSettings
from pipeline.errors import ConfigError

RETRY_AFTER_SECONDS = 1


class LimitedConfig(uvicorn.Config):
    """uvicorn's config with the connection limits the protocol reads."""

    def __init__(self, app: ASGIApp, *, limits: HttpServerSettings, **kwargs: Any) -> None:
        self.limits = limits
        if limits.trusted_proxies:
            kwargs.setdefault("forwarded_allow_ips", list(limits.trusted_proxies))
        super().__init__(
            app,
            http=guarded_protocol(limits.parser),
            timeout_keep_alive=limits.keep_alive_seconds,
            **kwargs,
        )


def guarded_protocol(parser: str) -> type[asyncio.Protocol]:
    """The protocol of ``parser`` (``auto``: httptools when installed, else h11)."""
    if parser == "h11" or (parser == "auto" and GuardedHttpToolsProtocol is None):
        return GuardedH11Protocol
    if GuardedHttpToolsProtocol is None:
        raise ConfigError(
            "PIPELINE_HTTP__PARSER=httptools but httptools is not installed: "
            "pip install httptools, or set PIPELINE_HTTP__PARSER=h11"
        )
    return GuardedHttpToolsProtocol


class _ConnectionGuard(asyncio.Protocol):
    """The header-read timeout and the connection cap, over either uvicorn protocol: put
    before the protocol in the bases, its hooks run around the protocol's own."""

    # What uvicorn's protocols have (typed here for the mixin).
    app: ASGIApp
    cycle: Any
    connections: set[Any]
    loop: asyncio.AbstractEventLoop
    transport: asyncio.Transport

    def __init__(
        self,
        config: uvicorn.Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)  # type: ignore[call-arg]
        self._guard(config)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        self._before_data()
        super().data_received(data)
        self._after_data()

    def _guard(self, config: uvicorn.Config) -> None:
        limits = config.limits if isinstance(config, LimitedConfig) else HttpServerSettings()
        self.header_timeout = limits.header_timeout_seconds
        self.max_connections = limits.max_connections
        self.admitted_app = self.app
        self.header_timer: asyncio.TimerHandle | None = None
        # The request cycle the timer waits to see replaced: uvicorn starts a new one once
        # a request's headers are complete.
        self.awaited_after: Any = None

    def _before_data(self) -> None:
        if self.header_timer is None and self._between_requests():
            self._arm()
        if len(self.connections) > self.max_connections:
            self.app = _over_capacity(len(self.connections), self.max_connections)
        else:
            self.app = self.admitted_app

    def _after_data(self) -> None:
        if self.cycle is not self.awaited_after:
            self._disarm()

    def _between_requests(self) -> bool:
        return self.cycle is None or self.cycle.response_complete

    def _arm(self) -> None:
        self.awaited_after = self.cycle
        self.header_timer = self.loop.call_later(self.header_timeout, self._headers_too_late)

    def _disarm(self) -> None:
        if self.header_timer is not None:
            self.header_timer.cancel()
            self.header_timer = None

    def _headers_too_late(self) -> None:
        self.header_timer = None
        if self.transport.is_closing() or self.cycle is not self.awaited_after:
            return
        if not self._between_requests():
            return
        reason = f"the request's headers did not arrive within {self.header_timeout:g}s"
        body = json.dumps({"error": reason}).encode()
        head = (
            "HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
        )
        self.transport.write(head.encode() + body)
        self.transport.close()


class GuardedH11Protocol(_ConnectionGuard, H11Protocol):
    """uvicorn's h11 protocol with a header-read timeout and a connection cap that
    answers with its reason."""


GuardedHttpToolsProtocol: type[asyncio.Protocol] | None
try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
except ImportError:  # httptools is not installed
    GuardedHttpToolsProtocol = None
else:

    class _GuardedHttpTools(_ConnectionGuard, HttpToolsProtocol):
        """uvicorn's httptools protocol (its parser in C) with the same limits."""

    GuardedHttpToolsProtocol = _GuardedHttpTools


def _over_capacity(open_connections: int, limit: int) -> ASGIApp:
    reason = (
        f"the server has {open_connections} open connections, over its limit of {limit}; "
        "retry later"
    )
    body = json.dumps({"error": reason}).encode()

    async def answer(scope: Scope, receive: Receive, send: Send) -> None:
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"retry-after", str(RETRY_AFTER_SECONDS).encode()),
            (b"connection", b"close"),
        ]
        await send({"type": "http.response.start", "status": 503, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return answer
