"""``/healthz`` and ``/readyz``: open to all, like the sign-in page."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from pipeline.services.console.site import Console


def router(console: Console) -> APIRouter:
    probes = APIRouter()

    @probes.get("/healthz")
    async def healthz() -> JSONResponse:
        return JSONResponse({"status": "ok", "reason": "serving"})

    @probes.get("/readyz")
    async def readyz() -> JSONResponse:
        ok, _ = console.ready()
        body = {"status": "ok"} if ok else {"status": "unavailable"}
        return JSONResponse(body, status_code=200 if ok else 503)

    return probes
