"""Signing in (a password, for a session cookie) and out (the session ends on every
replica). Sign-in attempts are limited per operator and per client address before any
password is checked (:mod:`pipeline.services.console.signin_limits`)."""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response

from pipeline.errors import BrokerUnavailableError, OperatorActionRefused
from pipeline.services.console.access import Scope
from pipeline.services.console.sessions import SESSION_COOKIE, Session
from pipeline.services.console.site import Console, local

log = logging.getLogger(__name__)


def router(console: Console) -> APIRouter:
    routes = APIRouter()
    cfg = console.settings.console

    @routes.get("/signin")
    async def signin_page(request: Request, next: str = "/") -> Response:
        return console.page(request, "signin.html", next=local(next), error=None)

    @routes.post("/signin")
    async def signin(
        request: Request,
        operator: Annotated[str, Form(max_length=64)],
        password: Annotated[str, Form(max_length=1024)],
        next: Annotated[str, Form(max_length=2048)] = "/",
    ) -> Response:
        address = request.client.host if request.client is not None else "unknown"
        try:
            console.signin_limits.spend(operator, address)
        except OperatorActionRefused as exc:
            console.metrics.signins.labels("limited").inc()
            log.warning("console sign-in limited for %r from %s", operator[:64], address)
            answer = console.page(
                request, "signin.html", exc.status, next=local(next), error=exc.reason
            )
            answer.headers["Retry-After"] = str(exc.retry_after)
            return answer
        ok = await asyncio.to_thread(console.operators.check_password, operator, password)
        if not ok:
            console.metrics.signins.labels("failure").inc()
            log.warning("console sign-in failed for %r", operator[:64])
            return console.page(
                request,
                "signin.html",
                401,
                next=local(next),
                error="Unknown operator or wrong password.",
            )
        console.metrics.signins.labels("success").inc()
        _, cookie = console.sessions.new(operator)
        answer = RedirectResponse(local(next), status_code=303)
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

    @routes.post("/signout")
    async def signout(request: Request, who: Scope) -> Response:
        """End the session on every replica (the sessions topic), then drop the cookie."""
        session = request.scope.get("state", {}).get("session")
        answer: Response = RedirectResponse("/signin", status_code=303)
        if isinstance(session, Session):
            try:
                await console.end_session(session)
            except BrokerUnavailableError as exc:
                log.error("operator %s signed out on this replica only: %s", who.operator, exc)
                reason = f"signed out on this console replica, not yet on the others: {exc}"
                answer = console.refused(request, 503, reason, retry_after=5)
        answer.delete_cookie(SESSION_COOKIE, path="/")
        return answer

    return routes
