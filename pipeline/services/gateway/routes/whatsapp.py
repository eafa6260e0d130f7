"""``/v1/whatsapp/webhook``: the WhatsApp Cloud API's verification handshake (GET) and
its notifications (POST, X-Hub-Signature-256)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import PlainTextResponse, Response

from pipeline.channels.inbound import Parsed
from pipeline.channels.whatsapp import inbound as whatsapp
from pipeline.errors import InboundRejected
from pipeline.services.gateway.api import Accepted, error_responses, request_body
from pipeline.services.gateway.ingest import Gateway, not_configured, secret


def router(gateway: Gateway) -> APIRouter:
    routes = APIRouter(tags=["channels"])
    cfg = gateway.settings.gateway

    @routes.get(
        "/v1/whatsapp/webhook",
        response_class=PlainTextResponse,
        responses=error_responses(400, 403, 404),
    )
    async def whatsapp_handshake(
        mode: Annotated[str | None, Query(alias="hub.mode")] = None,
        token: Annotated[str | None, Query(alias="hub.verify_token")] = None,
        challenge: Annotated[str | None, Query(alias="hub.challenge")] = None,
    ) -> Response:
        """WhatsApp webhook verification: echoes ``hub.challenge`` for the right token."""
        try:
            expected = secret(cfg.whatsapp_verify_token)
            if expected is None:
                raise not_configured("whatsapp")
            return PlainTextResponse(whatsapp.handshake(mode, token, challenge, expected))
        except InboundRejected as exc:
            return gateway.rejected("whatsapp", exc)

    @routes.post(
        "/v1/whatsapp/webhook",
        status_code=200,
        response_model=Accepted,
        responses=error_responses(400, 401, 404),
        openapi_extra=request_body(whatsapp.WhatsAppNotification),
    )
    async def whatsapp_notification(
        request: Request,
        x_hub_signature_256: Annotated[str | None, Header()] = None,
    ) -> Response:
        """WhatsApp Cloud API notifications (messages and statuses), X-Hub-Signature-256."""

        def parse(body: bytes) -> Parsed:
            app_secret = secret(cfg.whatsapp_app_secret)
            if app_secret is None:
                raise not_configured("whatsapp")
            whatsapp.verify(app_secret, x_hub_signature_256, body)
            return whatsapp.parse(body, gateway.owners)

        return await gateway.handle("whatsapp", request, parse)

    return routes
