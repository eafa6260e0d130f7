"""The console's HTTP app: pages rendered from the live view, a stream, the actions.

Pages are Jinja2 templates with autoescaping on, so whatever a user or a model wrote
is shown as text. A page asked with ``X-Console-Fragment: 1`` returns only its live
part, which the page's script fetches again whenever ``/stream`` (server-sent events)
says the view changed. Forms post to the action routes, which answer a browser with a
redirect back and an API client (bearer token) with the event produced as JSON.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import jinja2
from fastapi import FastAPI, Form, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from prometheus_client import CollectorRegistry
from sse_starlette import EventSourceResponse, ServerSentEvent

from pipeline.config import Settings
from pipeline.deadletters import DeadLetterStore
from pipeline.errors import (
    AlreadyRedriven,
    BrokerUnavailableError,
    DeadLetterError,
    EventValidationError,
    OperatorActionRefused,
    PipelineError,
    RedriveConflictError,
    UnknownDeadLetterError,
)
from pipeline.events.model import Event
from pipeline.events.serde import SingleObjectSerde
from pipeline.events.wire import make_serde
from pipeline.http.json_errors import add_json_errors, error_response, invalid_request_reason
from pipeline.http.readiness import KafkaReadiness
from pipeline.runtime.publisher import Publisher
from pipeline.services.console.actions import OperatorActions
from pipeline.services.console.auth import SESSION_COOKIE, Operators, Sessions
from pipeline.services.console.feed import Feed
from pipeline.services.console.guard import Guard
from pipeline.services.console.metrics import ConsoleMetrics
from pipeline.services.console.view import STATES, ConsoleView
from pipeline.timeline import conversation_timeline
from pipeline.toolbox.tool_offer import CatalogOffer

log = logging.getLogger(__name__)

TEMPLATES = Path(__file__).parent / "templates"
FRAGMENT_HEADER = "x-console-fragment"
PING_SECONDS = 15
STREAM_THROTTLE_SECONDS = 0.25
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


def conversation_url(conversation_id: str) -> str:
    return "/conversations/" + urllib.parse.quote(conversation_id, safe="")


def _when(at: datetime | None) -> str:
    return "" if at is None else at.strftime("%Y-%m-%d %H:%M:%S")


def _operator(request: Request) -> str:
    operator = request.scope.get("state", {}).get("operator")
    assert isinstance(operator, str), "the guard lets no request through without one"
    return operator


def _browser(request: Request) -> bool:
    return SESSION_COOKIE in request.cookies


def create_app(
    settings: Settings,
    *,
    registry: CollectorRegistry | None = None,
    publisher: Publisher | None = None,
) -> FastAPI:
    """The console app. Without ``publisher`` one is created at startup and closed at
    shutdown; the reader, the tool catalog and the readiness check run meanwhile."""
    registry = registry if registry is not None else CollectorRegistry()
    console = Console(settings, registry, publisher)
    cfg = settings.console
    if not len(console.operators):
        log.warning("no console operators configured: nobody can sign in")
    if cfg.session_secret is None:
        log.warning("PIPELINE_CONSOLE__SESSION_SECRET unset: sessions end with this process")

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        owned = console.actions.publisher is None
        connection = console.readiness.connection
        if owned:
            console.actions.publisher = Publisher.create(
                settings, console.name, connection.client_config()
            )
        feed = Feed(
            settings,
            console.serde,
            console.view,
            on_skipped=console.metrics.skipped.inc,
            client_config=connection.client_config(),
        )
        tasks = [
            asyncio.create_task(console.readiness.run(), name="kafka-readiness"),
            asyncio.create_task(feed.run(), name="console-reader"),
            asyncio.create_task(_follow_catalog(console.tools), name="tool-catalog"),
        ]
        app.state.feed = feed
        console.dead_letters = DeadLetterStore.from_settings(settings, connection)
        try:
            yield
        finally:
            console.readiness.stop()
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            await asyncio.to_thread(console.dead_letters.close)
            console.dead_letters = None
            if owned and console.actions.publisher is not None:
                await console.actions.publisher.close(settings.drain_timeout_seconds)
                console.actions.publisher = None

    app = FastAPI(
        title="pipeline console",
        lifespan=lifespan,
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
    )
    app.state.console = console

    def refused(request: Request, status: int, reason: str) -> Response:
        if _browser(request) and request.method == "POST":
            back = request.headers.get("referer") or "/"
            return console.page(request, "error.html", status, error=reason, back=back)
        return error_response(status, reason)

    add_json_errors(app, internal_error="internal error")

    @app.exception_handler(OperatorActionRefused)
    async def action_refused(request: Request, exc: OperatorActionRefused) -> Response:
        return refused(request, exc.status, exc.reason)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> Response:
        console.metrics.refused.labels("invalid").inc()
        return refused(request, 400, invalid_request_reason(exc))

    # ------------------------------------------------------------------ public

    @app.get("/healthz")
    async def healthz() -> JSONResponse:
        return JSONResponse({"status": "ok", "reason": "serving"})

    @app.get("/readyz")
    async def readyz() -> JSONResponse:
        ok, _ = console.readiness.verdict()
        body = {"status": "ok"} if ok else {"status": "unavailable"}
        return JSONResponse(body, status_code=200 if ok else 503)

    @app.get("/signin")
    async def signin_page(request: Request, next: str = "/") -> Response:
        return console.page(request, "signin.html", next=_local(next), error=None)

    @app.post("/signin")
    async def signin(
        request: Request,
        operator: Annotated[str, Form(max_length=64)],
        password: Annotated[str, Form(max_length=1024)],
        next: Annotated[str, Form(max_length=2048)] = "/",
    ) -> Response:
        ok = await asyncio.to_thread(console.operators.check_password, operator, password)
        if not ok:
            console.metrics.signins.labels("failure").inc()
            log.warning("console sign-in failed for %r", operator[:64])
            return console.page(
                request,
                "signin.html",
                401,
                next=_local(next),
                error="Unknown operator or wrong password.",
            )
        console.metrics.signins.labels("success").inc()
        _, cookie = console.sessions.new(operator)
        answer = RedirectResponse(_local(next), status_code=303)
        answer.set_cookie(
            SESSION_COOKIE,
            cookie,
            max_age=cfg.session_max_age_seconds,
            httponly=True,
            samesite="strict",
            secure=cfg.cookie_secure,
            path="/",
        )
        return answer

    # ------------------------------------------------------------------ pages

    @app.post("/signout")
    async def signout() -> Response:
        answer = RedirectResponse("/signin", status_code=303)
        answer.delete_cookie(SESSION_COOKIE, path="/")
        return answer

    @app.get("/console.js")
    async def script() -> Response:
        body = (TEMPLATES / "console.js").read_bytes()
        return Response(body, media_type="text/javascript", headers=SECURITY_HEADERS)

    @app.get("/")
    async def conversations(
        request: Request,
        tenant: Annotated[str, Query(max_length=64)] = "",
        channel: Annotated[str, Query(max_length=32)] = "",
        state: Annotated[str, Query(max_length=32)] = "",
    ) -> Response:
        view = console.view
        return console.page(
            request,
            "conversations.html",
            conversations=view.listed(tenant, channel, state)[:500],
            tenants=view.tenants(),
            channels=view.channels(),
            states=STATES,
            tenant=tenant,
            channel=channel,
            state=state,
        )

    @app.get("/inbox")
    async def inbox(request: Request) -> Response:
        return console.page(request, "inbox.html", conversations=console.view.inbox())

    @app.get("/approvals")
    async def approvals(request: Request) -> Response:
        return console.page(request, "approvals.html", approvals=console.view.pending_approvals())

    @app.get("/conversations/{conversation_id:path}/timeline")
    async def timeline(request: Request, conversation_id: str) -> Response:
        entries = await asyncio.to_thread(
            conversation_timeline, settings, console.serde, conversation_id
        )
        ids = {str(e.event.metadata.event_id) for e in entries}
        return console.page(
            request, "timeline.html", conversation_id=conversation_id, entries=entries, ids=ids
        )

    @app.get("/conversations/{conversation_id:path}")
    async def conversation(request: Request, conversation_id: str) -> Response:
        found = console.view.conversations.get(conversation_id)
        if found is None:
            return JSONResponse(
                {"error": f"no conversation {conversation_id!r} in the console's view"}, 404
            )
        return console.page(request, "conversation.html", c=found)

    @app.get("/stream")
    async def stream(request: Request) -> Response:
        """Server-sent events: ``changed`` with the view's version whenever it changes."""

        async def changes() -> AsyncIterator[ServerSentEvent]:
            console.metrics.stream_clients.inc()
            try:
                version = console.view.version
                yield ServerSentEvent(str(version), event="changed")
                while True:
                    version = await console.view.wait_changed(version)
                    yield ServerSentEvent(str(version), event="changed")
                    await asyncio.sleep(STREAM_THROTTLE_SECONDS)
            finally:
                console.metrics.stream_clients.dec()

        return EventSourceResponse(
            changes(), ping=PING_SECONDS, headers={"Cache-Control": "no-store"}
        )

    # ------------------------------------------------------------------ actions

    async def act(request: Request, back: str, action: Callable[[], Awaitable[Event]]) -> Response:
        try:
            event = await action()
        except OperatorActionRefused as exc:
            return refused(request, exc.status, exc.reason)
        except EventValidationError as exc:
            return refused(request, 400, f"the action does not fit its event schema: {exc}")
        except BrokerUnavailableError as exc:
            return refused(request, 503, f"not stored, try again: {exc}")
        if _browser(request):
            return RedirectResponse(back, status_code=303)
        body = {"event_id": str(event.id), "event_type": event.type}
        return JSONResponse(body, status_code=202)

    @app.post("/conversations/{conversation_id:path}/take")
    async def take(request: Request, conversation_id: str) -> Response:
        operator = _operator(request)
        return await act(
            request,
            conversation_url(conversation_id),
            lambda: console.actions.take(operator, conversation_id),
        )

    @app.post("/conversations/{conversation_id:path}/reply")
    async def reply(
        request: Request, conversation_id: str, text: Annotated[str, Form(max_length=32768)]
    ) -> Response:
        operator = _operator(request)
        return await act(
            request,
            conversation_url(conversation_id),
            lambda: console.actions.reply(operator, conversation_id, text),
        )

    @app.post("/conversations/{conversation_id:path}/release")
    async def release(
        request: Request,
        conversation_id: str,
        note: Annotated[str, Form(max_length=4096)] = "",
    ) -> Response:
        operator = _operator(request)
        return await act(
            request,
            conversation_url(conversation_id),
            lambda: console.actions.release(operator, conversation_id, note),
        )

    @app.post("/approvals/{approval_id}/decide")
    async def decide(
        request: Request,
        approval_id: str,
        decision: Annotated[str, Form(max_length=16)],
        arguments_json: Annotated[str, Form(max_length=32768)] = "",
        note: Annotated[str, Form(max_length=4096)] = "",
    ) -> Response:
        operator = _operator(request)
        return await act(
            request,
            "/approvals",
            lambda: console.actions.decide(operator, approval_id, decision, arguments_json, note),
        )

    @app.get("/dead-letters")
    async def dead_letters(
        request: Request, source_topic: Annotated[str, Query(max_length=249)] = ""
    ) -> Response:
        """The newest dead letters: error, source position, redriven or not."""
        store = _store(console)
        try:
            entries = await asyncio.to_thread(
                store.list, limit=cfg.dead_letters_listed, source_topic=source_topic or None
            )
        except DeadLetterError as exc:
            return refused(request, 503, f"cannot read the dead letters: {exc}")
        return console.page(
            request, "dead_letters.html", entries=entries, source_topic=source_topic
        )

    @app.post("/dead-letters/{letter_id}/redrive")
    async def redrive(request: Request, letter_id: str) -> Response:
        """Produce the letter's original again to its source topic, once (recorded on the
        redrives topic with the operator's id), as ``pipeline dlq redrive`` does."""
        operator = _operator(request)
        store = _store(console)
        try:
            done = await asyncio.to_thread(store.redrive, letter_id, operator=operator)
        except UnknownDeadLetterError as exc:
            return refused(request, 404, str(exc))
        except (AlreadyRedriven, RedriveConflictError) as exc:
            return refused(request, 409, str(exc))
        except DeadLetterError as exc:
            return refused(request, 503, f"not redriven: {exc}")
        console.metrics.actions.labels("redrive").inc()
        if _browser(request):
            return RedirectResponse("/dead-letters", status_code=303)
        return JSONResponse(done.as_json(), status_code=202)

    app.add_middleware(
        Guard,
        operators=console.operators,
        sessions=console.sessions,
        metrics=console.metrics,
        allowed_origins=frozenset(cfg.allowed_origins),
    )
    return app


def _store(console: Console) -> DeadLetterStore:
    if console.dead_letters is None:
        raise OperatorActionRefused(503, "the console is starting")
    return console.dead_letters


async def _follow_catalog(tools: CatalogOffer) -> None:
    """Follow the tool catalog (for checking edited arguments), waiting for its topic."""
    while True:
        try:
            await tools.follower.follow()
        except PipelineError as exc:
            log.warning("cannot follow the tool catalog yet: %s", exc)
            await asyncio.sleep(5.0)


def _local(target: str) -> str:
    """``target`` if it is a path on this site, else ``/`` (no open redirect)."""
    parsed = urllib.parse.urlsplit(target)
    if parsed.scheme or parsed.netloc or not target.startswith("/") or target.startswith("//"):
        return "/"
    return target
