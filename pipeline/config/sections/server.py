"""The HTTP servers' settings (gateway and console)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from pipeline.config.sections._base import _Section


class HttpServerSettings(_Section):
    """What the HTTP servers (gateway, console) allow a connection before they shed it."""

    header_timeout_seconds: float = Field(
        10.0,
        gt=0,
        le=300,
        description="A connection that has not sent a request's whole headers this long "
        "after it opened (or after its last request's answer) is answered 408 and closed.",
    )
    keep_alive_seconds: int = Field(
        5, ge=1, le=300, description="An idle kept-alive connection is closed after this long."
    )
    max_connections: int = Field(
        2048,
        ge=1,
        description="Open connections a process serves; a request on any connection past "
        "them is answered 503 with Retry-After and its connection closed. Open streams "
        "count: keep it above stream_max_per_tenant.",
    )
    parser: Literal["auto", "httptools", "h11"] = Field(
        "auto",
        description="The HTTP/1.1 parser: httptools (llhttp, in C) or h11 (pure Python); "
        "auto is httptools when installed. Both are held to the same limits.",
    )
    trusted_proxies: list[str] = Field(
        default_factory=list,
        description="Addresses (or networks, or '*') of proxies whose X-Forwarded-For names "
        "the client, as uvicorn's forwarded_allow_ips; default: 127.0.0.1 only. Limits per "
        "client count the client so named.",
    )
