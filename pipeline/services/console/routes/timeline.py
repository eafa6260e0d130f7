"""A conversation's timeline: every event of it across the topics, read from Kafka."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request
from fastapi.responses import Response

from pipeline.services.console.site import Console
from pipeline.timeline import conversation_timeline


def router(console: Console) -> APIRouter:
    routes = APIRouter()

    @routes.get("/conversations/{conversation_id:path}/timeline")
    async def timeline(request: Request, conversation_id: str) -> Response:
        entries = await asyncio.to_thread(
            conversation_timeline, console.settings, console.serde, conversation_id
        )
        ids = {str(e.event.metadata.event_id) for e in entries}
        return console.page(
            request, "timeline.html", conversation_id=conversation_id, entries=entries, ids=ids
        )

    return routes
