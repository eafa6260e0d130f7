"""What keeps the pages live: their script, and ``/stream``, the server-sent events that
tell it when the view changed (it then fetches the page's live fragment again)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sse_starlette import EventSourceResponse, ServerSentEvent

from pipeline.services.console.site import SECURITY_HEADERS, TEMPLATES, Console

PING_SECONDS = 15
STREAM_THROTTLE_SECONDS = 0.25


def router(console: Console) -> APIRouter:
    routes = APIRouter()

    @routes.get("/console.js")
    async def script() -> Response:
        body = (TEMPLATES / "console.js").read_bytes()
        return Response(body, media_type="text/javascript", headers=SECURITY_HEADERS)

    @routes.get("/stream")
    async def stream(request: Request) -> Response:
        """Server-sent events: ``changed`` with the view's version whenever it changes."""

        async def changes() -> AsyncIterator[ServerSentEvent]:
            console.metrics.stream_clients.inc()
            try:
                version = console.view.version
                yield ServerSentEvent(str(version), event="changed")
                while True:
                    version = await console.view.wait_changed(version)
                    yield ServerSentEvent(str(version), event="changed")
                    await asyncio.sleep(STREAM_THROTTLE_SECONDS)
            finally:
                console.metrics.stream_clients.dec()

        return EventSourceResponse(
            changes(), ping=PING_SECONDS, headers={"Cache-Control": "no-store"}
        )

    return routes
