"""Every refusal of an HTTP service as JSON: ``{"error": "<reason>"}`` with its status.

:func:`add_json_errors` installs the handlers on an app: Starlette's and FastAPI's own
refusals (404, 405, a request that does not fit the route's parameters) and an
unexpected exception (500, logged with its traceback) are answered in that shape too.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException

log = logging.getLogger(__name__)

# How many of a request's validation problems a refusal names.
PROBLEMS_SHOWN = 5


def error_response(
    status: int, reason: str, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    """``{"error": reason}`` with ``status`` (and ``headers``)."""
    return JSONResponse({"error": reason}, status_code=status, headers=headers)


def invalid_request_reason(exc: RequestValidationError) -> str:
    """``invalid request: <where>: <problem>; ...`` for the first few problems."""
    problems = "; ".join(
        f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:PROBLEMS_SHOWN]
    )
    return f"invalid request: {problems}"


def add_json_errors(app: FastAPI, *, internal_error: str) -> None:
    """Answer HTTP errors (404, 405, ... with their headers), requests that do not fit
    their route's parameters (400 with the problems) and unexpected exceptions (500 with
    ``internal_error`` as the reason, the traceback logged) with JSON."""

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        return JSONResponse(
            {"error": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers
        )

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> Response:
        return error_response(400, invalid_request_reason(exc))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Response:
        log.error("unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
        return error_response(500, internal_error)
