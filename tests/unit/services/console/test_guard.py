"""The console's door refuses a WebSocket outright: no route of any kind passes unguarded."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry

from pipeline.services.console.auth import Operators
from pipeline.services.console.guard import Guard
from pipeline.services.console.metrics import ConsoleMetrics
from pipeline.services.console.sessions import Sessions


async def test_a_websocket_is_closed_without_reaching_the_app() -> None:
    reached: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        reached.append(scope["path"])

    guard = Guard(
        app,
        operators=Operators({}),
        sessions=Sessions("key", max_age=60),
        metrics=ConsoleMetrics(CollectorRegistry(), "console"),
        allowed_origins=frozenset(),
    )
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "websocket.connect"}

    async def send(message: Any) -> None:
        sent.append(dict(message))

    scope = {"type": "websocket", "path": "/stream", "headers": [], "query_string": b""}
    await guard(scope, receive, send)
    assert reached == []
    assert sent == [{"type": "websocket.close", "code": 1008}]
