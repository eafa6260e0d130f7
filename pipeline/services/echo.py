"""The echo service: answers every message with its own text, on the same channel.

It exercises the whole runtime (consume, decode, handle, emit, commit) and stands in for
the agent until a real one is deployed.
"""

from __future__ import annotations

from pipeline.config import Settings
from pipeline.events.model import Event
from pipeline.runtime.context import Context
from pipeline.runtime.service import Service


def build(settings: Settings | None = None) -> Service:
    service = Service("echo", settings=settings, emits=["response_ready"])

    @service.handler("message_received")
    async def echo(event: Event, ctx: Context) -> None:
        ctx.emit(
            "response_ready",
            {
                "reply_to": event["reply_to"],
                "text": f"echo: {event['text']}",
                "in_reply_to": event.get("external_id"),
                "proactive": False,
                "ingress_at": event.metadata.occurred_at,
            },
        )

    return service
