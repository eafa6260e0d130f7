"""What keeps the pages live: their script, and ``/stream``, the server-sent events that
tell it when what the operator sees changed (it then fetches the page's live fragment
again), when dead letters came or were redriven (the dead-letters page fetches its list
again), when the agent refused or ignored an operator's action (the page says so, with
the reason), and when Kafka stopped or started answering (it shows or hides the banner).
Nothing of another tenant is ever announced; the stream ends when its session is signed
out or its operator removed."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sse_starlette import EventSourceResponse, ServerSentEvent

from pipeline.services.console.access import Scope
from pipeline.services.console.site import SECURITY_HEADERS, TEMPLATES, Console

PING_SECONDS = 15
STREAM_THROTTLE_SECONDS = 0.25


def router(console: Console) -> APIRouter:
    routes = APIRouter()

    @routes.get("/console.js")
    async def script(who: Scope) -> Response:
        body = (TEMPLATES / "console.js").read_bytes()
        return Response(body, media_type="text/javascript", headers=SECURITY_HEADERS)

    @routes.get("/stream")
    async def stream(request: Request, who: Scope) -> Response:
        """Server-sent events: ``changed`` (numbered from 1 per stream) whenever a
        conversation the operator sees changes; ``dead-letters`` (numbered) whenever a
        dead letter of theirs is read or redriven; ``refused`` and ``ignored`` (the
        action, its conversation and the reason, as JSON) whenever the agent refuses or
        ignores an operator's action they see; ``kafka`` (``{"down": ..., "banner":
        ...}``) whenever Kafka stops or starts answering the console."""
        view = console.view

        async def changes() -> AsyncIterator[ServerSentEvent]:
            console.metrics.stream_clients.inc()
            try:
                announced, seen, version = 1, view.changes_seen_by(who), view.version
                letters, letters_seen = 0, view.letters_seen_by(who)
                notified = view.notice_seq
                banner = console.outage.banner()
                yield ServerSentEvent(str(announced), event="changed")
                if banner:  # the page may have been rendered just before the outage began
                    yield kafka(banner)
                while True:
                    with contextlib.suppress(TimeoutError):
                        version = await asyncio.wait_for(view.wait_changed(version), PING_SECONDS)
                    if not console.signed_in(request):
                        return
                    if console.outage.banner() != banner:
                        banner = console.outage.banner()
                        yield kafka(banner)
                    fresh, notified = view.notices_for(who, notified), view.notice_seq
                    for notice in fresh:
                        yield ServerSentEvent(json.dumps(notice.as_json()), event=notice.kind)
                    if view.letters_seen_by(who) != letters_seen:
                        letters, letters_seen = letters + 1, view.letters_seen_by(who)
                        yield ServerSentEvent(str(letters), event="dead-letters")
                    now = view.changes_seen_by(who)
                    if now != seen:
                        announced, seen = announced + 1, now
                        yield ServerSentEvent(str(announced), event="changed")
                        await asyncio.sleep(STREAM_THROTTLE_SECONDS)
            finally:
                console.metrics.stream_clients.dec()

        return EventSourceResponse(
            changes(), ping=PING_SECONDS, headers={"Cache-Control": "no-store"}
        )

    return routes


def kafka(banner: str) -> ServerSentEvent:
    """Whether Kafka answers the console, and the banner to show while it does not."""
    return ServerSentEvent(json.dumps({"down": bool(banner), "banner": banner}), event="kafka")
