"""The console's door: no route without an operator, no cross-site state change.

:class:`Guard` is ASGI middleware in front of every route, so a route added later is
guarded without anyone remembering to. A request is an operator's when it carries a
valid session cookie (signed, not expired, not signed out: :mod:`.sessions`) of an
operator still configured, or ``Authorization: Bearer <operator token>``; otherwise a
page (GET asking for HTML) is redirected to the sign-in page and anything else gets 401.
The operator's :class:`~pipeline.services.console.access.Access` (tenants and role) is
put on the request for the routes (:data:`~pipeline.services.console.access.Scope`).
Only :data:`PUBLIC` paths are open: the sign-in page and the probes.

Every request with another method than GET/HEAD must come from the console's own
pages: ``Sec-Fetch-Site`` (sent by browsers) must be same-origin and ``Origin``, when
sent, the console's own (or an allowed one); then a session's request must repeat the
session's CSRF token, as the form field ``csrf_token`` or the header ``X-CSRF-Token``.
The body is read here for that (bounded) and replayed to the app
(:mod:`pipeline.http.body`). A bearer-token request needs no CSRF token: browsers never
attach it on their own.

A refusal is ``{"error": reason}``, or the error page (``error_page``) for a browser
(a request that accepts ``text/html``).
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable

from starlette.datastructures import Headers
from starlette.requests import ClientDisconnect, cookie_parser
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from pipeline.http.body import read_body, replay, send_json, send_response
from pipeline.services.console.auth import Operators, cross_site, same_token
from pipeline.services.console.metrics import ConsoleMetrics
from pipeline.services.console.sessions import SESSION_COOKIE, Sessions

PUBLIC = frozenset({"/signin", "/healthz", "/readyz"})
SAFE_METHODS = frozenset({"GET", "HEAD"})
MAX_FORM_BYTES = 256 * 1024
NO_STORE = (b"cache-control", b"no-store")
SIGN_IN_FIRST = "sign in first (session cookie or bearer token)"


class Guard:
    def __init__(
        self,
        app: ASGIApp,
        *,
        operators: Operators,
        sessions: Sessions,
        metrics: ConsoleMetrics,
        allowed_origins: frozenset[str],
        error_page: Callable[[int, str], Response] | None = None,
    ) -> None:
        """``error_page`` answers a browser's refused request (status, reason) with a page."""
        self.app = app
        self.error_page = error_page
        self.operators = operators
        self.sessions = sessions
        self.metrics = metrics
        self.allowed_origins = allowed_origins

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            # The console serves no WebSocket; refuse one rather than let it pass unguarded.
            await send({"type": "websocket.close", "code": 1008})
            return
        if scope["type"] != "http":  # lifespan
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        method, path = scope["method"], scope["path"]
        if method not in SAFE_METHODS:
            own = f"{scope.get('scheme', 'http')}://{headers.get('host', '')}"
            why = cross_site(
                headers.get("origin"), headers.get("sec-fetch-site"), own, self.allowed_origins
            )
            if why is not None:
                self.metrics.refused.labels("cross_site").inc()
                await self._refuse(send, headers, 403, why)
                return
        if path in PUBLIC:
            await self.app(scope, receive, send)
            return
        session = self.sessions.read(cookie_parser(headers.get("cookie", "")).get(SESSION_COOKIE))
        operator = session.operator if session is not None else self._bearer(headers)
        # Looked up on every request: a removed operator's cookie lets no one in.
        access = self.operators.access(operator) if operator is not None else None
        if access is None:
            self.metrics.refused.labels("unauthenticated").inc()
            if method == "GET" and "text/html" in headers.get("accept", "") and path != "/stream":
                target = urllib.parse.quote(path + _query(scope), safe="")
                await _redirect(send, f"/signin?next={target}")
            else:
                await self._refuse(send, headers, 401, SIGN_IN_FIRST)
            return
        state = scope.setdefault("state", {})
        state["operator"] = access.operator
        state["access"] = access
        state["session"] = session
        state["csrf"] = session.csrf if session is not None else None
        if method in SAFE_METHODS or session is None:
            await self.app(scope, receive, send)
            return
        try:
            body = await read_body(receive, MAX_FORM_BYTES)
        except ClientDisconnect:
            return
        if body is None:
            self.metrics.refused.labels("invalid").inc()
            await self._refuse(send, headers, 413, f"form larger than {MAX_FORM_BYTES} bytes")
            return
        given = headers.get("x-csrf-token") or _form_field(headers, body, "csrf_token")
        if not same_token(given, session.csrf):
            self.metrics.refused.labels("csrf_token").inc()
            reason = "missing or wrong CSRF token: reload the page and try again"
            await self._refuse(send, headers, 403, reason)
            return
        await self.app(scope, replay(body, receive), send)

    async def _refuse(self, send: Send, headers: Headers, status: int, reason: str) -> None:
        if self.error_page is None or "text/html" not in headers.get("accept", ""):
            await send_json(send, status, {"error": reason}, [NO_STORE])
            return
        await send_response_object(send, self.error_page(status, reason))

    def _bearer(self, headers: Headers) -> str | None:
        scheme, _, token = headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        return self.operators.operator_for_token(token.strip())


async def send_response_object(send: Send, response: Response) -> None:
    """Send a whole, already rendered Starlette response (headers and body)."""
    start = {"type": "http.response.start", "status": response.status_code}
    await send({**start, "headers": response.raw_headers})
    await send({"type": "http.response.body", "body": bytes(response.body)})


def _query(scope: Scope) -> str:
    query = scope.get("query_string", b"").decode("latin-1")
    return f"?{query}" if query else ""


def _form_field(headers: Headers, body: bytes, name: str) -> str | None:
    if not headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        return None
    values = urllib.parse.parse_qs(body.decode("utf-8", "replace")).get(name)
    return values[0] if values else None


async def _redirect(send: Send, location: str) -> None:
    await send_response(send, 303, b"", [(b"location", location.encode()), NO_STORE])
