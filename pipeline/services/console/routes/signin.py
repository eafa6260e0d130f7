"""Signing in (a password, for a session cookie) and out."""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response

from pipeline.services.console.auth import SESSION_COOKIE
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
    async def signout() -> Response:
        answer = RedirectResponse("/signin", status_code=303)
        answer.delete_cookie(SESSION_COOKIE, path="/")
        return answer

    return routes
