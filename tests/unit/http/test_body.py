"""The body read once by middleware and replayed: the app sees it whole, then the
server's own ``receive``, so a stream keeps going while the client stays and a
disconnect is still seen; bodies over the limit are refused before the app."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Message

from pipeline.config.sections import ConsoleOperator
from pipeline.http.body import BodyLimit, read_body, replay
from pipeline.services.console.auth import Operators
from pipeline.services.console.guard import Guard
from pipeline.services.console.metrics import ConsoleMetrics
from pipeline.services.console.sessions import SESSION_COOKIE, Sessions

CHUNKS = [b"one ", b"two ", b"three"]


async def streamed(request: Request) -> Response:
    """Echo the body, then stream a few chunks, as an SSE route would."""
    body = await request.body()

    async def chunks() -> AsyncIterator[bytes]:
        yield body + b"|"
        for chunk in CHUNKS:
            await asyncio.sleep(0.01)
            yield chunk

    return StreamingResponse(chunks(), media_type="text/plain")


async def disconnected(request: Request) -> Response:
    body = await request.body()
    return JSONResponse({"body": body.decode(), "gone": await request.is_disconnected()})


APP = Starlette(
    routes=[
        Route("/stream", streamed, methods=["POST"]),
        Route("/disconnected", disconnected, methods=["POST"]),
    ]
)


def client(app: ASGIApp) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


async def test_a_stream_behind_the_body_limit_runs_to_its_end() -> None:
    # Starlette streams while listening for http.disconnect on receive(); a replay that
    # answered "disconnected" after the body would cut the stream off at once.
    async with client(BodyLimit(APP, max_bytes=1024)) as http:
        response = await http.post("/stream", content=b"hello")
    assert response.status_code == 200
    assert response.content == b"hello|" + b"".join(CHUNKS)


async def test_a_client_still_there_is_not_reported_gone() -> None:
    async with client(BodyLimit(APP, max_bytes=1024)) as http:
        response = await http.post("/disconnected", content=b"hello")
    assert response.json() == {"body": "hello", "gone": False}


async def test_after_the_replay_receive_is_the_servers_own() -> None:
    disconnect: Message = {"type": "http.disconnect", "from": "server"}
    messages: list[Message] = [
        {"type": "http.request", "body": b"ab", "more_body": True},
        {"type": "http.request", "body": b"c", "more_body": False},
        disconnect,
    ]

    async def receive() -> Message:
        return messages.pop(0)

    body = await read_body(receive, 10)
    assert body == b"abc"
    again = replay(body, receive)
    assert await again() == {"type": "http.request", "body": b"abc", "more_body": False}
    assert await again() is disconnect
    assert messages == []


async def test_a_body_over_the_limit_is_refused_before_the_app() -> None:
    reached: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        reached.append(scope["path"])

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: read up to the limit
        for _ in range(4):
            yield b"x" * 4

    async with client(BodyLimit(app, max_bytes=10)) as http:
        streamed_body = await http.post("/any", content=chunks())
        declared = await http.post("/any", content=b"x" * 11)
    for response in (streamed_body, declared):
        assert response.status_code == 413
        assert response.json() == {"error": "request body is larger than the limit of 10 bytes"}
    assert reached == []


async def test_a_client_leaving_during_the_body_gets_no_answer_and_no_app() -> None:
    reached: list[str] = []
    sent: list[Message] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        reached.append(scope["path"])

    messages: list[Message] = [
        {"type": "http.request", "body": b"ab", "more_body": True},
        {"type": "http.disconnect"},
    ]

    async def receive() -> Message:
        return messages.pop(0)

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/any", "headers": []}
    await BodyLimit(app, max_bytes=10)(scope, receive, send)
    assert reached == [] and sent == []


async def test_the_console_guard_replays_the_form_the_same_way() -> None:
    sessions = Sessions("key", max_age=60)
    session, cookie = sessions.new("ada")
    guard = Guard(
        APP,
        operators=Operators({"ada": ConsoleOperator(token="tok-ada")}),
        sessions=sessions,
        metrics=ConsoleMetrics(CollectorRegistry(), "console"),
        allowed_origins=frozenset(),
    )
    headers = {
        "cookie": f"{SESSION_COOKIE}={cookie}",
        "x-csrf-token": session.csrf,
        "sec-fetch-site": "same-origin",
    }
    async with client(guard) as http:
        stream = await http.post("/stream", content=b"note=hi", headers=headers)
        still_there = await http.post("/disconnected", content=b"note=hi", headers=headers)
    assert stream.content == b"note=hi|" + b"".join(CHUNKS)
    assert still_there.json() == {"body": "note=hi", "gone": False}
