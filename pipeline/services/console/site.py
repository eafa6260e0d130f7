"""What every route of the console uses: its parts, and how it answers.

Pages are Jinja2 templates with autoescaping on, so whatever a user or a model wrote
is shown as text. A page asked with ``X-Console-Fragment: 1`` returns only its live
part, which the page's script fetches again whenever ``/stream`` (server-sent events)
says the view changed. Forms post to the action routes, which answer a browser with a
redirect back and an API client (bearer token) with the event produced as JSON.

A refusal or an error is a page for a browser (its form again, with what the operator
typed and the reason, where the route can show it; else the error page) and
``{"error": reason}`` for an API client or a request asking for JSON. A browser never
gets a 5xx for an outage: while Kafka is down every page answers, with a banner saying
so (:mod:`pipeline.services.console.outage`), and an action that could not be stored
says so on its page; an API client gets 503 with ``Retry-After``, as from the gateway.
After an action a browser's page confirms it and follows what became of it
(:meth:`Console.done`).

Every route takes the signed-in operator's
:data:`~pipeline.services.console.access.Scope` and shows and does only what it allows
(its tenants, its role); a new page does the same (``create_app`` refuses a route
without it).
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
from pipeline.services.console.access import Access
from pipeline.services.console.actions import OperatorActions
from pipeline.services.console.auth import Operators
from pipeline.services.console.cleanup import CleanupFold
from pipeline.services.console.feed import Feed
from pipeline.services.console.metrics import ConsoleMetrics
from pipeline.services.console.operator_actions import OperatorAction
from pipeline.services.console.outage import OutageWatch
from pipeline.services.console.sessions import SESSION_COOKIE, Session, Sessions, ended_record
from pipeline.services.console.signin_limits import SigninLimits
from pipeline.services.console.view import ConsoleView
from pipeline.toolbox.tool_offer import CatalogOffer

log = logging.getLogger(__name__)

TEMPLATES = Path(__file__).parent / "templates"
FRAGMENT_HEADER = "x-console-fragment"
DONE_COOKIE = "pipeline_console_done"  # the action a browser is sent back after
DONE_HEADER = "x-console-done"  # the same, kept by the page for its live refreshes
DONE_SECONDS = 60
RETRY_AFTER_SECONDS = 5  # an action Kafka did not take: when to try again
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
        self.signin_limits = SigninLimits(cfg)
        self.feed: Feed | None = None  # created at startup
        self.view = ConsoleView(cfg.max_conversations, cfg.max_messages)
        self.cleanup = CleanupFold(settings.agent.cleanup_window_seconds, cfg.max_conversations)
        self.serde: SingleObjectSerde = make_serde(settings, register=False)
        self.tools = CatalogOffer(settings)
        self.actions = OperatorActions(self.view, self.tools, self.metrics, publisher)
        self.readiness = KafkaReadiness(
            settings, ("operator_message", "approval_decided", cfg.sessions_topic)
        )
        self.outage = OutageWatch(self.readiness, self.view)
        self.dead_letters: DeadLetterStore | None = None  # created at startup
        self.templates = jinja2.Environment(
            loader=jinja2.FileSystemLoader(TEMPLATES),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
        )
        self.templates.globals.update(
            conversation_url=conversation_url, uncertain_url=uncertain_url, when=_when
        )

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
            ended=self.sessions.ended,
            on_skipped=self.metrics.skipped.inc,
            folds=[self.cleanup.apply_all],
            client_config=connection.client_config(),
        )
        tasks = [
            asyncio.create_task(self.readiness.run(), name="kafka-readiness"),
            asyncio.create_task(self.outage.run(), name="kafka-outage"),
            asyncio.create_task(feed.run(), name="console-reader"),
            asyncio.create_task(_follow_catalog(self.tools), name="tool-catalog"),
            asyncio.create_task(self._reload_operators(), name="console-operators"),
        ]
        app.state.feed = self.feed = feed
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

    def ready(self) -> tuple[bool, str]:
        """Ready once Kafka was checked and the sign-outs written before start were read
        (until then a signed-out cookie could get in); for ``/readyz`` and the probes."""
        ok, reason = self.readiness.verdict()
        if ok and (self.feed is None or not self.feed.sessions_read.is_set()):
            return False, "starting: reading the sessions topic (sign-outs)"
        return ok, reason

    def signed_in(self, request: Request) -> bool:
        """Whether the request's session has not ended since the request began and its
        operator is still configured (for the live stream, which lasts)."""
        state = request.scope.get("state", {})
        session = state.get("session")
        if isinstance(session, Session) and session.sid in self.sessions.ended:
            return False
        return self.operators.access(str(state.get("operator"))) is not None

    async def end_session(self, session: Session) -> None:
        """Sign ``session`` out on every replica: ended here at once, and written to the
        sessions topic, which every replica reads (BrokerUnavailableError when Kafka does
        not take it: the session is then ended on this replica only)."""
        max_age = self.sessions.max_age
        self.sessions.ended.end(session.sid, (session.issued_at or 0.0) + max_age)
        if self.actions.publisher is None:
            raise BrokerUnavailableError("the console's Kafka producer is not running yet")
        await self.actions.publisher.publish_record(
            self.settings.console.sessions_topic, session.sid, ended_record(session, max_age)
        )

    async def _reload_operators(self) -> None:
        """Read ``operators_file`` again whenever it changes (a removed operator is out)."""
        while True:
            await asyncio.sleep(self.settings.console.operators_reload_seconds)
            if await asyncio.to_thread(self.operators.reload):
                await self.view.changed()  # live streams of removed operators end

    def page(self, request: Request, name: str, status: int = 200, **values: Any) -> Response:
        """A page, or only its live fragment (``_<name>``) when the script asks for it."""
        if request.headers.get(FRAGMENT_HEADER) == "1":
            name = f"_{name}"
        state = request.scope.get("state", {})
        values.setdefault("operator", state.get("operator"))
        access = state.get("access")
        values.setdefault("may", lambda role: access is not None and access.may(role))
        values.setdefault("csrf", state.get("csrf") or "")
        values.setdefault("lookback_hours", self.settings.console.lookback_hours)
        values.setdefault("kafka_down", self.outage.banner() if values["operator"] else "")
        values.setdefault("typed", {})  # what the operator typed in a form refused
        values.setdefault("notice", None)  # a refusal shown above the page
        values.setdefault("hold", False)  # live part not replaced: it holds a refused form
        done = self.done_key(request)
        values.setdefault("done_key", done)
        values.setdefault("done", self._done(done, access))
        body = self.templates.get_template(name).render(**values)
        answer = HTMLResponse(body, status_code=status, headers=SECURITY_HEADERS)
        if DONE_COOKIE in request.cookies and request.headers.get(FRAGMENT_HEADER) != "1":
            answer.delete_cookie(DONE_COOKIE, path="/")  # confirmed once: the page keeps it
        return answer

    @staticmethod
    def done_key(request: Request) -> str:
        """What the browser was sent back after (:meth:`done`), or ""."""
        return request.headers.get(DONE_HEADER) or request.cookies.get(DONE_COOKIE) or ""

    def _done(self, done: str, access: Access | None) -> OperatorAction | None:
        """The action a browser was sent back after, to confirm it and say what became of
        it (live); None when there is none, or it is not the operator's to see."""
        action = self.view.action(done) if done else None
        if action is None or access is None or not access.sees(action.tenant):
            return None
        return action

    def refused(
        self, request: Request, status: int, reason: str, retry_after: int | None = None
    ) -> Response:
        """The error page for a browser, ``{"error": reason}`` for an API client (and
        whatever asks for JSON)."""
        if status == 403:
            self.metrics.refused.labels("forbidden").inc()
        if wants_html(request):
            back = request.headers.get("referer") or "/"
            answer = self.page(request, "error.html", shown(status), error=reason, back=back)
        else:
            answer = error_response(status, reason)
        if retry_after is not None:
            answer.headers["Retry-After"] = str(retry_after)
        return answer

    def done(self, answer: Response, key: str) -> Response:
        """``answer`` (the redirect back after an action) naming what was done, so that
        the page it leads to confirms it: a cookie read once by that page, which then
        keeps the key for its live refreshes (``X-Console-Done``)."""
        answer.set_cookie(
            DONE_COOKIE,
            key,
            max_age=DONE_SECONDS,
            httponly=True,
            samesite="strict",
            secure=self.settings.console.cookie_secure,
            path="/",
        )
        return answer

    def error_page(self, status: int, reason: str) -> Response:
        """The error page outside any route (the guard's refusals, for browsers)."""
        values = {"operator": None, "csrf": "", "lookback_hours": 0, "kafka_down": ""}
        body = self.templates.get_template("error.html").render(
            error=reason, back="/", may=lambda role: False, typed={}, notice=None, **values
        )
        return HTMLResponse(body, status_code=status, headers=SECURITY_HEADERS)

    async def act(
        self,
        request: Request,
        back: str,
        action: Callable[[], Awaitable[Event]],
        again: Callable[[str], Response | None] | None = None,
    ) -> Response:
        """Run an operator's action: a browser is sent ``back``, an API client gets the
        event produced (202); a refusal is answered with its status and reason: for a
        browser, by ``again`` (its form, with what was typed and the reason) when it
        returns a page, else the error page."""
        retry_after = None
        try:
            event = await action()
        except OperatorActionRefused as exc:
            status, reason, retry_after = exc.status, exc.reason, exc.retry_after
        except EventValidationError as exc:
            status, reason = 400, f"the action does not fit its event schema: {exc}"
        except BrokerUnavailableError as exc:
            status, reason = 503, f"not stored, try again: {exc}"
            retry_after = RETRY_AFTER_SECONDS
        else:
            if browser(request):
                return self.done(RedirectResponse(back, status_code=303), str(event.id))
            body = {"event_id": str(event.id), "event_type": event.type}
            return JSONResponse(body, status_code=202)
        form = again(reason) if again is not None and wants_html(request) else None
        if form is None:
            return self.refused(request, status, reason, retry_after)
        if status == 403:
            self.metrics.refused.labels("forbidden").inc()
        form.status_code = shown(status)
        return form

    def dead_letter_store(self) -> DeadLetterStore:
        """The dead-letter store; 503 while the console starts."""
        if self.dead_letters is None:
            raise OperatorActionRefused(503, "the console is starting")
        return self.dead_letters


def conversation_url(conversation_id: str) -> str:
    return "/conversations/" + urllib.parse.quote(conversation_id, safe="")


def uncertain_url(call_id: str) -> str:
    return "/uncertain/" + urllib.parse.quote(call_id, safe="")


def _when(at: datetime | None) -> str:
    return "" if at is None else at.strftime("%Y-%m-%d %H:%M:%S")


def browser(request: Request) -> bool:
    """Does the request come from a browser's session (not an API client's token)?"""
    return SESSION_COOKIE in request.cookies


def shown(status: int) -> int:
    """The status of a page saying a request was refused: 503 (Kafka, or the console,
    not available: the page says so) is answered 200, so a browser never gets a 5xx for
    an outage; a failure of the console itself stays 500."""
    return 200 if status == 503 else status


def wants_html(request: Request) -> bool:
    """Is the answer for a person: a request asking for HTML (as browsers do for pages
    and forms), or a session's form post that does not ask for JSON?"""
    accept = request.headers.get("accept", "")
    if "text/html" in accept:
        return True
    return "application/json" not in accept and browser(request) and request.method == "POST"


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
