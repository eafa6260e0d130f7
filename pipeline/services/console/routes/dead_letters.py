"""The dead letters: the newest listed, and one produced again to its source (redriven).

An operator sees the letters of their tenants (a letter's tenant is its original
event's; a letter whose original does not decode has none and is seen only by operators
of every tenant); redriving takes the ``admin`` role.

The list is read from Kafka when the page is asked for. When it cannot be (Kafka is
unreachable, the console is starting), a browser gets the page with the list last read
for the same operator and filter, marked stale with when it was read, and the reason;
an API client gets 503 with the reason.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response

from pipeline.deadletters import DeadLetterEntry
from pipeline.errors import (
    AlreadyRedriven,
    DeadLetterError,
    OperatorActionRefused,
    RedriveConflictError,
    UnknownDeadLetterError,
)
from pipeline.events.model import utc_now
from pipeline.services.console.access import Scope
from pipeline.services.console.site import (
    FRAGMENT_HEADER,
    RETRY_AFTER_SECONDS,
    Console,
    browser,
    wants_html,
)

REDRIVEN = "redriven:"  # the key of a redrive done, for its confirmation
LISTINGS_KEPT = 64  # last lists read, per operator and filter, shown while Kafka is not


@dataclass(frozen=True, slots=True)
class Listing:
    """A list of dead letters as read at ``read_at``."""

    read_at: datetime
    entries: list[DeadLetterEntry]


def router(console: Console) -> APIRouter:
    routes = APIRouter()
    cfg = console.settings.console
    listings: OrderedDict[tuple[str, str], Listing] = OrderedDict()

    @routes.get("/dead-letters")
    async def dead_letters(
        request: Request, who: Scope, source_topic: Annotated[str, Query(max_length=249)] = ""
    ) -> Response:
        """The newest dead letters: error, source position, redriven or not (the letter a
        browser was sent back after redriving, confirmed)."""
        key = (who.operator, source_topic)
        problem = None
        outage = console.outage.current()
        if outage is not None:
            problem = outage.banner
        else:
            try:
                store = console.dead_letter_store()
                entries = await asyncio.to_thread(
                    store.list,
                    limit=cfg.dead_letters_listed,
                    source_topic=source_topic or None,
                    tenant=who.sees,
                )
            except (DeadLetterError, OperatorActionRefused) as exc:
                problem = str(exc.reason if isinstance(exc, OperatorActionRefused) else exc)
            else:
                listings[key] = Listing(utc_now(), entries)
                listings.move_to_end(key)
                while len(listings) > LISTINGS_KEPT:
                    listings.popitem(last=False)
        if problem is not None and not (
            wants_html(request) or request.headers.get(FRAGMENT_HEADER) == "1"
        ):
            reason = f"cannot read the dead letters: {problem}"
            return console.refused(request, 503, reason, RETRY_AFTER_SECONDS)
        last = listings.get(key)
        entries = last.entries if last is not None else []
        done = console.done_key(request)
        redriven = next((e for e in entries if REDRIVEN + e.letter_id == done), None)
        return console.page(
            request,
            "dead_letters.html",
            entries=entries,
            read_at=last.read_at if last is not None else None,
            problem=problem,
            source_topic=source_topic,
            redriven=redriven if redriven is not None and redriven.redriven else None,
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
            return console.refused(request, 503, f"not redriven: {exc}", RETRY_AFTER_SECONDS)
        console.metrics.actions.labels("redrive").inc()
        if browser(request):
            answer = RedirectResponse("/dead-letters", status_code=303)
            return console.done(answer, REDRIVEN + done.letter_id)
        return JSONResponse(done.as_json(), status_code=202)

    return routes
