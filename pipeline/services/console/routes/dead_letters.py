"""The dead letters: the newest listed, and one produced again to its source (redriven).

An operator sees the letters of their tenants (a letter's tenant is its original
event's; a letter whose original does not decode has none and is seen only by operators
of every tenant); redriving takes the ``admin`` role.
"""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response

from pipeline.errors import (
    AlreadyRedriven,
    DeadLetterError,
    RedriveConflictError,
    UnknownDeadLetterError,
)
from pipeline.services.console.access import Scope
from pipeline.services.console.site import Console, browser


def router(console: Console) -> APIRouter:
    routes = APIRouter()
    cfg = console.settings.console

    @routes.get("/dead-letters")
    async def dead_letters(
        request: Request, who: Scope, source_topic: Annotated[str, Query(max_length=249)] = ""
    ) -> Response:
        """The newest dead letters: error, source position, redriven or not."""
        store = console.dead_letter_store()
        try:
            entries = await asyncio.to_thread(
                store.list,
                limit=cfg.dead_letters_listed,
                source_topic=source_topic or None,
                tenant=who.sees,
            )
        except DeadLetterError as exc:
            return console.refused(request, 503, f"cannot read the dead letters: {exc}")
        return console.page(
            request, "dead_letters.html", entries=entries, source_topic=source_topic
        )

    @routes.post("/dead-letters/{letter_id}/redrive")
    async def redrive(request: Request, who: Scope, letter_id: str) -> Response:
        """Produce the letter's original again to its source topic, once (recorded on the
        redrives topic with the operator's id), as ``pipeline dlq redrive`` does."""
        who.require("admin", "redrive a dead letter")
        store = console.dead_letter_store()
        try:
            who.one(await asyncio.to_thread(store.get, letter_id), f"no dead letter {letter_id}")
            done = await asyncio.to_thread(store.redrive, letter_id, operator=who.operator)
        except UnknownDeadLetterError as exc:
            return console.refused(request, 404, str(exc))
        except (AlreadyRedriven, RedriveConflictError) as exc:
            return console.refused(request, 409, str(exc))
        except DeadLetterError as exc:
            return console.refused(request, 503, f"not redriven: {exc}")
        console.metrics.actions.labels("redrive").inc()
        if browser(request):
            return RedirectResponse("/dead-letters", status_code=303)
        return JSONResponse(done.as_json(), status_code=202)

    return routes
