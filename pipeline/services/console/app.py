"""The console's HTTP app: the routers of every page group wired onto one FastAPI app,
behind the guard.

What the routes share and how they answer is :mod:`pipeline.services.console.site`; the
routes are in :mod:`pipeline.services.console.routes`, one module per page group; the
guard (:mod:`pipeline.services.console.guard`) stands in front of all of them, and every
route but the public ones takes the operator's scope
(:data:`pipeline.services.console.access.Scope`): an app with a route that does not is
refused here, before it serves anything.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from prometheus_client import CollectorRegistry
from starlette.exceptions import HTTPException

from pipeline.config import Settings
from pipeline.errors import OperatorActionRefused
from pipeline.http.json_errors import add_json_errors, error_response, invalid_request_reason
from pipeline.http.routers import add_routers
from pipeline.runtime.publisher import Publisher
from pipeline.services.console.access import unscoped_routes
from pipeline.services.console.guard import PUBLIC, Guard
from pipeline.services.console.routes import (
    cleanup,
    conversations,
    dead_letters,
    inbox,
    live,
    probes,
    signin,
    timeline,
    uncertain,
)
from pipeline.services.console.site import Console, wants_html

log = logging.getLogger(__name__)

INTERNAL_ERROR = "internal error: the console failed on this request (its log says why)"


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
    unscoped = console.operators.unscoped()
    if unscoped:
        log.warning(
            "console operators without tenants and role see every tenant as admins: %s "
            "(set their tenants and role)",
            ", ".join(unscoped),
        )

    app = FastAPI(
        title="pipeline console",
        lifespan=console.lifespan,
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
    )
    app.state.console = console
    add_refusals(app, console)
    add_routers(
        app,
        probes.router(console),
        signin.router(console),
        live.router(console),
        inbox.router(console),
        timeline.router(console),  # before the conversations: their path would take it
        conversations.router(console),
        uncertain.router(console),
        dead_letters.router(console),
        cleanup.router(console),
    )
    check_scoped(app)
    app.add_middleware(
        Guard,
        operators=console.operators,
        sessions=console.sessions,
        metrics=console.metrics,
        allowed_origins=frozenset(cfg.allowed_origins),
        error_page=console.error_page,
    )
    return app


def check_scoped(app: FastAPI) -> None:
    """Refuse an app with a route outside :data:`PUBLIC` that takes no operator scope:
    such a route would show or act on every tenant's conversations."""
    missing = unscoped_routes(app.routes, PUBLIC)
    if missing:
        raise TypeError(
            f"console routes without the operator's scope (a `who: Scope` parameter): "
            f"{', '.join(missing)}"
        )


def add_refusals(app: FastAPI, console: Console) -> None:
    """Errors as the error page for a browser and as JSON for API clients: refused
    actions, invalid forms, unknown paths and methods, and unexpected failures (500 for
    an API client, logged with the traceback; a browser's page says it failed)."""
    add_json_errors(app, internal_error=INTERNAL_ERROR)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        if not wants_html(request):
            return error_response(exc.status_code, str(exc.detail), exc.headers)
        return console.refused(request, exc.status_code, str(exc.detail))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Response:
        log.error("unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
        return console.refused(request, 500, INTERNAL_ERROR)

    @app.exception_handler(OperatorActionRefused)
    async def action_refused(request: Request, exc: OperatorActionRefused) -> Response:
        return console.refused(request, exc.status, exc.reason, exc.retry_after)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> Response:
        console.metrics.refused.labels("invalid").inc()
        return console.refused(request, 400, invalid_request_reason(exc))
