"""``POST /v1/webhooks/{source}``: a signed call from an external system (CRM, ticketing),
as the API description says; ``/webhooks/{source}`` is the path of the first design, kept
for senders configured so (not in the documentation)."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Header, Path, Request
from fastapi.responses import Response

from pipeline.channels.inbound import Parsed
from pipeline.channels.webhook import inbound as webhook
from pipeline.services.gateway.api import Accepted, error_responses, request_body
from pipeline.services.gateway.ingest import Gateway, secret


def router(gateway: Gateway) -> APIRouter:
    routes = APIRouter(tags=["webhooks"])
    cfg = gateway.settings.gateway

    async def webhook_call(
        request: Request,
        source: Annotated[str, Path(min_length=1, max_length=128)],
        x_signature_256: Annotated[str | None, Header()] = None,
        x_webhook_timestamp: Annotated[str | None, Header()] = None,
    ) -> Response:
        """A signed call from an external system (see the description above)."""

        def parse(body: bytes) -> Parsed:
            sources = {
                name: webhook.Source(str(secret(s.secret)), s.tenants, s.conversation_prefixes)
                for name, s in cfg.sources().items()
            }
            found = webhook.source_for(source, sources)
            webhook.verify(
                found.secret,
                x_webhook_timestamp,
                x_signature_256,
                body,
                time.time(),
                cfg.webhook_tolerance_seconds,
            )
            return webhook.parse(source, found, body, gateway.owners)

        return await gateway.handle("webhook", request, parse)

    for path, listed in (("/v1/webhooks/{source}", True), ("/webhooks/{source}", False)):
        routes.post(
            path,
            include_in_schema=listed,
            status_code=202,
            response_model=Accepted,
            responses=error_responses(400, 401, 403, 404),
            openapi_extra=request_body(webhook.WebhookCall),
        )(webhook_call)

    return routes
