"""``POST /v1/web/messages``: a web chat message sent by the tenant's backend."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Request
from fastapi.responses import Response

from pipeline.channels.inbound import Parsed, bearer_tenant
from pipeline.channels.web import inbound as web
from pipeline.services.gateway.api import Accepted, error_responses, request_body
from pipeline.services.gateway.ingest import Gateway, secret


def router(gateway: Gateway) -> APIRouter:
    routes = APIRouter(tags=["channels"])
    cfg = gateway.settings.gateway

    @routes.post(
        "/v1/web/messages",
        status_code=202,
        response_model=Accepted,
        responses=error_responses(400, 401, 403),
        openapi_extra=request_body(web.WebMessage),
    )
    async def web_message(
        request: Request, authorization: Annotated[str | None, Header()] = None
    ) -> Response:
        """A web chat message; ``Authorization: Bearer <tenant token>``."""

        def parse(body: bytes) -> Parsed:
            tokens = {tenant: str(secret(token)) for tenant, token in cfg.web_tokens.items()}
            tenant = bearer_tenant(authorization, tokens)
            return web.parse(body, tenant)

        return await gateway.handle("web", request, parse)

    return routes
