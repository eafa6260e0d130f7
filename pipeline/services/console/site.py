"""What every route of the console uses: its parts, and how it answers.

Pages are Jinja2 templates with autoescaping on, so whatever a user or a model wrote
is shown as text. A page asked with ``X-Console-Fragment: 1`` returns only its live
part, which the page's script fetches again whenever ``/stream`` (server-sent events)
says the view changed. Forms post to the action routes, which answer a browser with a
redirect back and an API client (bearer token) with the event produced as JSON; a
refused action is an error page for a browser's form, JSON otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import jinja2
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from prometheus_client import CollectorRegistry

from pipeline.config import Settings
from pipeline.deadletters import DeadLetterStore
from pipeline.errors import (
    BrokerUnavailableError,
    EventValidationError,
    OperatorActionRefused,
    PipelineError,
)
from pipeline.events.model import Event
from pipeline.events.serde import SingleObjectSerde
from pipeline.events.wire import make_serde
from pipeline.http.json_errors import error_response
from pipeline.http.readiness import KafkaReadiness
from pipeline.runtime.publisher import Publisher
from pipeline.services.console.actions import OperatorActions
from pipeline.services.console.auth import SESSION_COOKIE, Operators, Sessions
from pipeline.services.console.cleanup import CleanupFold
from pipeline.services.console.feed import Feed
from pipeline.services.console.metrics import ConsoleMetrics
from pipeline.services.console.view import ConsoleView
from pipeline.toolbox.tool_offer import CatalogOffer

log = logging.getLogger(__name__)

TEMPLATES = Path(__file__).parent / "templates"
FRAGMENT_HEADER = "x-console-fragment"
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; "
    "style-src 'self' 'unsafe-inline'; frame-ancestors 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


class Console:
    """What the routes share: settings, view, reader, publisher, actions, metrics."""

    def __init__(
        self, settings: Settings, registry: CollectorRegistry, publisher: Publisher | None
    ) -> None:
        cfg = settings.console
        self.settings = settings
        self.name = settings.service_name or "console"
        self.metrics = ConsoleMetrics(registry, self.name)
        self.operators = Operators.from_settings(settings)
        self.sessions = Sessions.from_settings(settings)
        self.view = ConsoleView(cfg.max_conversations, cfg.max_messages)
        self.cleanup = CleanupFold(settings.agent.cleanup_window_seconds, cfg.max_conversations)
        self.serde: SingleObjectSerde = make_serde(settings, register=False)
        self.tools = CatalogOffer(settings)
        self.actions = OperatorActions(self.view, self.tools, self.metrics, publisher)
        self.readiness = KafkaReadiness(settings, ("operator_message", "approval_decided"))
        self.dead_letters: DeadLetterStore | None = None  # created at startup
        self.templates = jinja2.Environment(
            loader=jinja2.FileSystemLoader(TEMPLATES),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
        )
        self.templates.globals.update(conversation_url=conversation_url, when=_when)

    @contextlib.asynccontextmanager
    async def lifespan(self, app: FastAPI) -> AsyncIterator[None]:
        """The app's lifespan: without a publisher given, one is created at startup and
        closed at shutdown; the reader, the tool catalog and the readiness check run
        meanwhile, and the dead-letter store is open."""
        settings = self.settings
        owned = self.actions.publisher is None
        connection = self.readiness.connection
        if owned:
            self.actions.publisher = Publisher.create(
                settings, self.name, connection.client_config()
            )
        feed = Feed(
            settings,
            self.serde,
            self.view,
            on_skipped=self.metrics.skipped.inc,
            folds=[self.cleanup.apply_all],
            client_config=connection.client_config(),
        )
        tasks = [
            asyncio.create_task(self.readiness.run(), name="kafka-readiness"),
            asyncio.create_task(feed.run(), name="console-reader"),
            asyncio.create_task(_follow_catalog(self.tools), name="tool-catalog"),
        ]
        app.state.feed = feed
        self.dead_letters = DeadLetterStore.from_settings(settings, connection)
        try:
            yield
        finally:
            self.readiness.stop()
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            await asyncio.to_thread(self.dead_letters.close)
            self.dead_letters = None
            if owned and self.actions.publisher is not None:
                await self.actions.publisher.close(settings.drain_timeout_seconds)
                self.actions.publisher = None

    def page(self, request: Request, name: str, status: int = 200, **values: Any) -> Response:
        """A page, or only its live fragment (``_<name>``) when the script asks for it."""
        if request.headers.get(FRAGMENT_HEADER) == "1":
            name = f"_{name}"
        state = request.scope.get("state", {})
        values.setdefault("operator", state.get("operator"))
        values.setdefault("csrf", state.get("csrf") or "")
        values.setdefault("lookback_hours", self.settings.console.lookback_hours)
        body = self.templates.get_template(name).render(**values)
        return HTMLResponse(body, status_code=status, headers=SECURITY_HEADERS)

    def refused(self, request: Request, status: int, reason: str) -> Response:
        """The error page for a browser's form, ``{"error": reason}`` otherwise."""
        if browser(request) and request.method == "POST":
            back = request.headers.get("referer") or "/"
            return self.page(request, "error.html", status, error=reason, back=back)
        return error_response(status, reason)

    async def act(
        self, request: Request, back: str, action: Callable[[], Awaitable[Event]]
    ) -> Response:
        """Run an operator's action: a browser is sent ``back``, an API client gets the
        event produced (202); a refusal is answered with its status and reason."""
        try:
            event = await action()
        except OperatorActionRefused as exc:
            return self.refused(request, exc.status, exc.reason)
        except EventValidationError as exc:
            return self.refused(request, 400, f"the action does not fit its event schema: {exc}")
        except BrokerUnavailableError as exc:
            return self.refused(request, 503, f"not stored, try again: {exc}")
        if browser(request):
            return RedirectResponse(back, status_code=303)
        body = {"event_id": str(event.id), "event_type": event.type}
        return JSONResponse(body, status_code=202)

    def dead_letter_store(self) -> DeadLetterStore:
        """The dead-letter store; 503 while the console starts."""
        if self.dead_letters is None:
            raise OperatorActionRefused(503, "the console is starting")
        return self.dead_letters


def conversation_url(conversation_id: str) -> str:
    return "/conversations/" + urllib.parse.quote(conversation_id, safe="")


def _when(at: datetime | None) -> str:
    return "" if at is None else at.strftime("%Y-%m-%d %H:%M:%S")


def operator_of(request: Request) -> str:
    """The signed-in operator the guard put on the request."""
    operator = request.scope.get("state", {}).get("operator")
    assert isinstance(operator, str), "the guard lets no request through without one"
    return operator


def browser(request: Request) -> bool:
    """Does the request come from a browser's session (not an API client's token)?"""
    return SESSION_COOKIE in request.cookies


def local(target: str) -> str:
    """``target`` if it is a path on this site, else ``/`` (no open redirect)."""
    parsed = urllib.parse.urlsplit(target)
    if parsed.scheme or parsed.netloc or not target.startswith("/") or target.startswith("//"):
        return "/"
    return target


async def _follow_catalog(tools: CatalogOffer) -> None:
    """Follow the tool catalog (for checking edited arguments), waiting for its topic."""
    while True:
        try:
            await tools.follower.follow()
        except PipelineError as exc:
            log.warning("cannot follow the tool catalog yet: %s", exc)
            await asyncio.sleep(5.0)
