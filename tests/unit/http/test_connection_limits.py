"""The limits every HTTP connection is held to, on a real uvicorn server on 127.0.0.1:
header-read timeout (408), keep-alive timeout, the connection cap (503 with a reason)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from pipeline.config.sections import HttpServerSettings
from pipeline.http.connection_limits import (
    GuardedH11Protocol,
    GuardedHttpToolsProtocol,
    guarded_protocol,
)
from pipeline.http.server import GracefulServer

REQUEST = b"GET /ok HTTP/1.1\r\nHost: test\r\n\r\n"

# Every limit holds with either parser the servers may use.
pytestmark = pytest.mark.parametrize("parser", ["httptools", "h11"])


async def ok(request: Request) -> JSONResponse:
    await asyncio.sleep(float(request.query_params.get("sleep", "0")))
    return JSONResponse({"status": "ok"})


APP = Starlette(routes=[Route("/ok", ok)])


@contextlib.asynccontextmanager
async def serving(**limits: object) -> AsyncIterator[int]:
    """The test app under the project's server on 127.0.0.1; yields its port."""
    settings = HttpServerSettings.model_validate(limits)
    server = GracefulServer.for_app(
        APP, host="127.0.0.1", port=0, drain_timeout_seconds=1, on_exit=lambda: None,
        limits=settings,
    )  # fmt: skip
    task = asyncio.create_task(server.serve())
    while not server.started:
        assert not task.done(), "the server did not start"
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield port
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)


async def read_answer(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    lines = head.decode().split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:] if x)}
    body = await asyncio.wait_for(reader.readexactly(int(headers["content-length"])), 10)
    return status, headers, body


async def closed_after(reader: asyncio.StreamReader) -> float:
    """Seconds until the server closes the connection (reading what it sends meanwhile)."""
    started = time.monotonic()
    while await asyncio.wait_for(reader.read(4096), 10):
        pass
    return time.monotonic() - started


async def test_a_connection_that_never_finishes_its_headers_gets_408_and_is_closed(
    parser: str,
) -> None:
    async with serving(parser=parser, header_timeout_seconds=0.5) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        started = time.monotonic()
        writer.write(b"GET /ok HTTP/1.1\r\nHost: te")
        await asyncio.sleep(0.2)
        writer.write(b"st\r\nX-Slow: 1\r\n")  # trickling bytes does not reset the timer
        status, headers, body = await read_answer(reader)
        assert status == 408
        assert headers["connection"] == "close"
        assert "did not arrive within 0.5s" in json.loads(body)["error"]
        await closed_after(reader)
        assert 0.4 < time.monotonic() - started < 3
        writer.close()


async def test_a_connection_that_sends_nothing_is_closed_at_the_header_timeout(parser: str) -> None:
    async with serving(parser=parser, header_timeout_seconds=0.3) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        assert await closed_after(reader) < 3
        writer.close()


async def test_headers_in_time_are_answered_however_long_the_app_takes(parser: str) -> None:
    async with serving(parser=parser, header_timeout_seconds=0.3) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /ok?sleep=0.8 HTTP/1.1\r\nHost: test\r\n\r\n")
        status, _, body = await read_answer(reader)
        assert (status, json.loads(body)) == (200, {"status": "ok"})
        # The connection is kept alive for the next request, with the timer armed again.
        writer.write(REQUEST)
        assert (await read_answer(reader))[0] == 200
        writer.write(b"GET /ok HTTP/1.1\r\n")
        assert (await read_answer(reader))[0] == 408
        writer.close()


async def test_an_idle_kept_alive_connection_is_closed_after_the_keep_alive_timeout(
    parser: str,
) -> None:
    async with serving(parser=parser, header_timeout_seconds=30, keep_alive_seconds=1) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(REQUEST)
        assert (await read_answer(reader))[0] == 200
        assert 0.5 < await closed_after(reader) < 5
        writer.close()


async def test_a_request_past_the_connection_cap_is_503_with_a_reason_and_retry_after(
    parser: str,
) -> None:
    async with serving(parser=parser, max_connections=2, header_timeout_seconds=30) as port:
        held = [await asyncio.open_connection("127.0.0.1", port) for _ in range(2)]
        await asyncio.sleep(0.1)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(REQUEST)
        status, headers, body = await read_answer(reader)
        assert status == 503
        assert headers["retry-after"] == "1"
        assert headers["connection"] == "close"
        assert "3 open connections, over its limit of 2" in json.loads(body)["error"]
        await closed_after(reader)
        writer.close()
        # The connections within the cap are served.
        first_reader, first_writer = held[0]
        first_writer.write(REQUEST)
        assert (await read_answer(first_reader))[0] == 200
        for _, held_writer in held:
            held_writer.close()


def test_auto_picks_the_httptools_parser_when_it_is_installed(parser: str) -> None:
    assert GuardedHttpToolsProtocol is not None
    assert guarded_protocol("auto") is GuardedHttpToolsProtocol
    expected = GuardedHttpToolsProtocol if parser == "httptools" else GuardedH11Protocol
    assert guarded_protocol(parser) is expected
