"""ASGI middleware of the gateway: the request metrics and spans.

The body size limit is :class:`pipeline.http.body.BodyLimit`.
"""

from __future__ import annotations

import time

from opentelemetry.trace import StatusCode
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pipeline.observability.otel import OBSERVE
from pipeline.runtime.spans import server_span
from pipeline.services.gateway.metrics import GatewayMetrics


class RequestMetrics:
    """Count every answer by route template (bounded) and status; time it."""

    def __init__(self, app: ASGIApp, metrics: GatewayMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def observe(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                route = _route_template(scope)
                self.metrics.request_duration.labels(route).observe(time.perf_counter() - started)
            await send(message)

        try:
            await self.app(scope, receive, observe)
        finally:
            self.metrics.requests.labels(_route_template(scope), str(status)).inc()


class ServerSpans:
    """With tracing on, a SERVER span per request, child of its ``traceparent``, named
    ``<method> <route template>``: the events a route produces are its children, so the
    request starts the trace of the turn."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not OBSERVE.tracing:
            await self.app(scope, receive, send)
            return
        with server_span(scope) as span:

            async def observe(message: Message) -> None:
                if message["type"] == "http.response.start":
                    status = int(message["status"])
                    span.set_attribute("http.response.status_code", status)
                    if status >= 500:
                        span.set_status(StatusCode.ERROR)
                await send(message)

            try:
                await self.app(scope, receive, observe)
            finally:
                route = _route_template(scope)
                span.set_attribute("http.route", route)
                span.update_name(f"{scope['method']} {route}")


def _route_template(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else "unmatched"
