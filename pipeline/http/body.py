"""The request body, read once in ASGI middleware, bounded, and replayed to the app.

Middleware that must see the body before the app does (a size limit, a CSRF token in a
form) reads it with :func:`read_body` and hands the app :func:`replay` of it. The replay
gives the whole body as one ``http.request`` message; every later ``receive()`` is the
server's own, as Starlette's ``Request`` and ``StreamingResponse`` expect: they keep
listening after the body for ``http.disconnect``, so a client that leaves is still
seen (a stream stops, ``request.is_disconnected()`` turns true), and a client that stays
is not reported gone.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

Headers = Sequence[tuple[bytes, bytes]]


async def send_response(send: Send, status: int, body: bytes, headers: Headers = ()) -> None:
    """Send a whole response: ``headers``, a ``Content-Length`` and ``body``."""
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [*headers, (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def send_json(
    send: Send, status: int, payload: dict[str, object], headers: Headers = ()
) -> None:
    """Send ``payload`` as a JSON response, with any further ``headers``."""
    body = json.dumps(payload).encode()
    await send_response(send, status, body, [(b"content-type", b"application/json"), *headers])


async def read_body(receive: Receive, max_bytes: int) -> bytes | None:
    """The whole request body, or None as soon as it grows over ``max_bytes`` (the rest
    is not read). Raises ClientDisconnect when the client leaves before the end."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > max_bytes:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that gives ``body`` once, then passes on to the server's ``receive``."""
    replayed = False

    async def replaying() -> Message:
        nonlocal replayed
        if not replayed:
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replaying


class BodyLimit:
    """ASGI middleware: answer 413 (with the limit in the reason) for bodies over
    ``max_bytes``, before any route parses or verifies them.

    A declared ``Content-Length`` over the limit is refused without reading; a streamed
    body is read only up to the limit. A client that leaves while sending gets no answer.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None:
            try:
                length = int(declared)
            except ValueError:
                await send_json(send, 400, {"error": "Content-Length is not a number"})
                return
            if length > self.max_bytes:
                await self._too_large(send)
                return
        try:
            body = await read_body(receive, self.max_bytes)
        except ClientDisconnect:
            return
        if body is None:
            await self._too_large(send)
            return
        await self.app(scope, replay(body, receive), send)

    async def _too_large(self, send: Send) -> None:
        reason = f"request body is larger than the limit of {self.max_bytes} bytes"
        await send_json(send, 413, {"error": reason})
