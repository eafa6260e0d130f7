"""The gateway's HTTP app: the routers of every channel wired onto one FastAPI app.

What a route does with a request is :mod:`pipeline.services.gateway.ingest`; the routes
are in :mod:`pipeline.services.gateway.routes`, one module per channel or page group;
what the documentation shows is :mod:`pipeline.services.gateway.api`.
"""

from __future__ import annotations

from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from pipeline.config import Settings
from pipeline.http.body import BodyLimit
from pipeline.http.json_errors import add_json_errors
from pipeline.http.routers import add_routers
from pipeline.runtime.publisher import Publisher
from pipeline.services.gateway.api import DESCRIPTION, document_request_bodies
from pipeline.services.gateway.ingest import Gateway
from pipeline.services.gateway.middleware import RequestMetrics, ServerSpans
from pipeline.services.gateway.routes import (
    chat_page,
    email,
    probes,
    slack,
    web,
    web_chat,
    webhooks,
    whatsapp,
)
from pipeline.services.gateway.web_chat import WebChat


def create_app(
    settings: Settings,
    *,
    registry: CollectorRegistry | None = None,
    publisher: Publisher | None = None,
) -> FastAPI:
    """The gateway app. Without ``publisher`` one is created at startup and closed at
    shutdown (lifespan), and a background task keeps ``/readyz`` current."""
    registry = registry if registry is not None else CollectorRegistry()
    gateway = Gateway(settings, registry, publisher)
    cfg = settings.gateway
    docs = cfg.public_docs
    app = FastAPI(
        title="pipeline gateway",
        version="1",
        description=DESCRIPTION,
        lifespan=gateway.lifespan,
        openapi_url="/openapi.json" if docs else None,
        docs_url="/docs" if docs else None,
        redoc_url="/redoc" if docs else None,
    )
    app.state.gateway = gateway
    add_json_errors(app, internal_error="internal error; the request was not stored")
    add_routers(
        app,
        probes.router(gateway),
        web.router(gateway),
        slack.router(gateway),
        whatsapp.router(gateway),
        email.router(gateway),
        web_chat.router(WebChat(gateway, gateway.hub)),
        chat_page.router(),
        webhooks.router(gateway),
    )
    document_request_bodies(app)
    app.add_middleware(BodyLimit, max_bytes=cfg.max_body_bytes)
    app.add_middleware(RequestMetrics, metrics=gateway.metrics)
    app.add_middleware(ServerSpans)  # outermost: the span covers the whole request
    return app
