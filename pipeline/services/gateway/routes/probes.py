"""``/healthz`` and ``/readyz`` on the public port (with the reason on the metrics port)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from pipeline.services.gateway.ingest import Gateway

# What the public /readyz says when not ready: the reason (broker addresses, errors)
# is for operators, on the metrics port.
PUBLIC_NOT_READY = {"status": "unavailable", "reason": "not ready"}


def router(gateway: Gateway) -> APIRouter:
    probes = APIRouter(tags=["operations"])

    @probes.get("/healthz")
    async def healthz() -> JSONResponse:
        """Liveness: the process serves requests."""
        return JSONResponse({"status": "ok", "reason": "serving"})

    @probes.get("/readyz")
    async def readyz() -> JSONResponse:
        """Readiness: the gateway answers requests, Kafka down included (then with 503
        and Retry-After); not ready while starting or when its topics are missing (why:
        on the metrics port, which also serves the metrics)."""
        ok, reason = gateway.readiness.verdict()
        # "degraded": Kafka does not answer, requests get 503 + Retry-After; the details
        # (broker addresses, errors) stay on the metrics port.
        fine = "degraded" if reason.startswith("degraded") else "ready"
        body = {"status": "ok", "reason": fine} if ok else PUBLIC_NOT_READY
        return JSONResponse(body, status_code=200 if ok else 503)

    return probes
