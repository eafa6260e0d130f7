"""Human cleanup: per tenant and agent version, how much work people still did after the
agent answered, over the console's look-back (handoff rate, first-answer-resolved rate,
approvals, operator replies per conversation, dead letters per 1,000 turns)."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter

from fastapi import APIRouter, Request
from fastapi.responses import Response

from pipeline.errors import DeadLetterError, OperatorActionRefused
from pipeline.services.console.access import Scope
from pipeline.services.console.site import Console

log = logging.getLogger(__name__)


def router(console: Console) -> APIRouter:
    routes = APIRouter()
    cfg = console.settings.console

    @routes.get("/cleanup")
    async def cleanup(request: Request, who: Scope) -> Response:
        dead: dict[str, int] | None = None
        try:
            entries = await asyncio.to_thread(
                console.dead_letter_store().list, limit=cfg.dead_letters_listed
            )
            dead = dict(Counter(e.conversation_id for e in entries if e.conversation_id))
        except (DeadLetterError, OperatorActionRefused) as exc:
            log.info("cleanup page without dead letters: %s", exc)
        return console.page(
            request,
            "cleanup.html",
            rows=who.visible(console.cleanup.rows(dead)),
            dead_letters_known=dead is not None,
            window_minutes=console.settings.agent.cleanup_window_seconds / 60,
        )

    return routes
