"""A service for the Prometheus scrape test: fails on messages whose text starts with
"fail", so that handler errors and handler-stage dead letters are exported too.

Run as ``pipeline run scrape_services:build_flaky`` with this folder on PYTHONPATH.
"""

from __future__ import annotations

from pipeline.config import Settings
from pipeline.events.model import Event
from pipeline.runtime.context import Context
from pipeline.runtime.service import Service


def build_flaky(settings: Settings | None = None) -> Service:
    service = Service("flaky", settings=settings)

    @service.handler("message_received")
    async def flaky(event: Event, ctx: Context) -> None:
        if str(event["text"]).startswith("fail"):
            raise RuntimeError("asked to fail")

    return service
