"""A conversation's timeline: every event of it across the topics, read from Kafka: the
audit trail, each operator action with the operator's id. While Kafka is unreachable it
cannot be read: a browser gets a page saying so, an API client 503 with Retry-After."""

from __future__ import annotations

import asyncio

from confluent_kafka import KafkaException
from fastapi import APIRouter, Request
from fastapi.responses import Response

from pipeline.errors import OperatorActionRefused, PipelineError
from pipeline.services.console.access import Scope
from pipeline.services.console.site import RETRY_AFTER_SECONDS, Console
from pipeline.timeline import conversation_timeline


def router(console: Console) -> APIRouter:
    routes = APIRouter()

    @routes.get("/conversations/{conversation_id:path}/timeline")
    async def timeline(request: Request, who: Scope, conversation_id: str) -> Response:
        missing = f"no conversation {conversation_id!r} in the console's view"
        known = console.view.conversations.get(conversation_id)
        if known is not None:
            who.one(known, missing)
        outage = console.outage.current()
        if outage is not None:
            if known is None and not who.all_tenants:
                raise OperatorActionRefused(404, missing)  # cannot tell whose it is
            return console.refused(
                request, 503, f"cannot read the timeline: {outage.banner}", RETRY_AFTER_SECONDS
            )
        try:
            found = await asyncio.to_thread(
                conversation_timeline, console.settings, console.serde, conversation_id
            )
        except (PipelineError, KafkaException) as exc:
            reason = f"cannot read the timeline from Kafka now, try again: {exc}"
            return console.refused(request, 503, reason, RETRY_AFTER_SECONDS)
        entries = [e for e in found if who.sees(e.event.metadata.tenant_id)]
        if not entries and not who.all_tenants:
            # Nothing of theirs: the same answer whether the conversation is another
            # tenant's or does not exist.
            raise OperatorActionRefused(404, missing)
        ids = {str(e.event.metadata.event_id) for e in entries}
        return console.page(
            request, "timeline.html", conversation_id=conversation_id, entries=entries, ids=ids
        )

    return routes
