"""Services the runtime tests run, in-process or as ``pipeline run service_apps:NAME``."""

from __future__ import annotations

import asyncio
import os
import random

from pipeline.config import Settings
from pipeline.events.model import Event
from pipeline.runtime.context import Context
from pipeline.runtime.service import Service


def relay(settings: Settings, *, max_sleep: float | None = None, name: str = "relay") -> Service:
    """message_received -> response_ready carrying the same text, after a random sleep.

    In a subprocess the sleep comes from RELAY_MAX_SLEEP_SECONDS.
    """
    if max_sleep is None:
        max_sleep = float(os.environ.get("RELAY_MAX_SLEEP_SECONDS", "0"))
    service = Service(name, settings=settings)

    @service.handler("message_received")
    async def respond(event: Event, ctx: Context) -> None:
        if max_sleep:
            await asyncio.sleep(random.uniform(0, max_sleep))
        ctx.emit(
            "response_ready",
            {"reply_to": event["reply_to"], "text": event["text"], "proactive": False},
        )

    return service


def build_relay(settings: Settings) -> Service:
    """Entry point for ``pipeline run service_apps:build_relay``."""
    return relay(settings)
