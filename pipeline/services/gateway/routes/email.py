"""``POST /v1/email/inbound``: an email normalised by a mail relay."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Request
from fastapi.responses import Response

from pipeline.channels.email import inbound as email
from pipeline.channels.inbound import Parsed, bearer_tenant
from pipeline.services.gateway.api import Accepted, error_responses, request_body
from pipeline.services.gateway.ingest import Gateway, not_configured, secret


def router(gateway: Gateway) -> APIRouter:
    routes = APIRouter(tags=["channels"])
    cfg = gateway.settings.gateway

    @routes.post(
        "/v1/email/inbound",
        status_code=202,
        response_model=Accepted,
        responses=error_responses(400, 401, 403, 404),
        openapi_extra=request_body(email.EmailMessage),
    )
    async def email_inbound(
        request: Request, authorization: Annotated[str | None, Header()] = None
    ) -> Response:
        """An email normalised by a mail relay; ``Authorization: Bearer <relay token>``."""

        def parse(body: bytes) -> Parsed:
            relays = cfg.relays()
            if not relays:
                raise not_configured("email")
            name = bearer_tenant(
                authorization, {n: str(secret(r.token)) for n, r in relays.items()}
            )
            relay = relays[name]
            return email.parse(
                body,
                relay.tenant,
                require_authentication=relay.require_authentication,
                authserv_id=relay.authserv_id,
            )

        return await gateway.handle("email", request, parse)

    return routes
