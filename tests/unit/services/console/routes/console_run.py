"""The console app for route tests: ASGI with the guard in front, events produced to a
memory broker, the view folded by the test (the lifespan, which reads Kafka, does not run
over ``ASGITransport``). bob is an API client (a bearer token), ada a browser (a session
cookie and its CSRF token, asking for HTML as browsers do)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
from prometheus_client import CollectorRegistry

from pipeline.config import Settings, bundled_dir
from pipeline.events.catalog import SchemaCatalog
from pipeline.events.model import Event
from pipeline.events.serde import SingleObjectSerde
from pipeline.runtime.memory_transport import MemoryBroker, MemoryProducer
from pipeline.runtime.publisher import Publisher
from pipeline.services.console import create_app
from pipeline.services.console.sessions import SESSION_COOKIE
from pipeline.services.console.site import Console

SERDE = SingleObjectSerde(SchemaCatalog.load(bundled_dir("schemas")))
TOKEN = "api-token-of-bob"
BEARER = {"Authorization": f"Bearer {TOKEN}"}
HTML = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"  # a browser's


@dataclass
class ConsoleRun:
    http: httpx.AsyncClient  # bob's: a bearer token
    browser: httpx.AsyncClient  # ada's: a session cookie, asking for HTML
    csrf: str  # ada's session's token
    console: Console
    broker: MemoryBroker
    registry: CollectorRegistry

    def produced(self, event_type: str) -> list[Event]:
        return [SERDE.decode(r.value() or b"") for r in self.broker.records(event_type)]

    async def form(self, path: str, **fields: str) -> httpx.Response:
        """Post a form from ada's browser, with the session's CSRF token."""
        return await self.browser.post(path, data={**fields, "csrf_token": self.csrf})


@asynccontextmanager
async def console_run(events: list[Event], **console: Any) -> AsyncIterator[ConsoleRun]:
    settings = Settings(
        metrics_port=0,
        console={
            "operators": {"bob": {"token": TOKEN}, "ada": {"token": "api-token-of-ada"}},
            "session_secret": "test-session-secret",
            "cookie_secure": False,
            **console,
        },
    )
    broker = MemoryBroker()
    producer = MemoryProducer(broker, asyncio.get_running_loop())
    publisher = Publisher(settings, producer, SERDE, "console")
    registry = CollectorRegistry()
    app = create_app(settings, registry=registry, publisher=publisher)
    found: Console = app.state.console
    found.view.apply_all(events)
    session, cookie = found.sessions.new("ada")
    transport = httpx.ASGITransport(app=app)
    async with (
        httpx.AsyncClient(transport=transport, base_url="http://console", headers=BEARER) as http,
        httpx.AsyncClient(
            transport=transport,
            base_url="http://console",
            headers={"Accept": HTML},
            cookies={SESSION_COOKIE: cookie},
        ) as browser,
    ):
        yield ConsoleRun(http, browser, session.csrf, found, broker, registry)
