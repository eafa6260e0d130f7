"""``POST /v1/slack/events``: the Slack Events API (signature v0)."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Header, Request
from fastapi.responses import JSONResponse, Response

from pipeline.channels.inbound import Parsed
from pipeline.channels.slack import inbound as slack
from pipeline.services.gateway.api import Accepted, error_responses, request_body
from pipeline.services.gateway.ingest import Gateway, not_configured, secret


def router(gateway: Gateway) -> APIRouter:
    routes = APIRouter(tags=["channels"])
    cfg = gateway.settings.gateway

    @routes.post(
        "/v1/slack/events",
        status_code=202,
        response_model=Accepted,
        responses=error_responses(400, 401, 404),
        openapi_extra=request_body(slack.SlackEnvelope),
    )
    async def slack_events(
        request: Request,
        x_slack_request_timestamp: Annotated[str | None, Header()] = None,
        x_slack_signature: Annotated[str | None, Header()] = None,
    ) -> Response:
        """Slack Events API: url_verification and message events (signature v0)."""

        def parse(body: bytes) -> Parsed | Response:
            signing_secret = secret(cfg.slack_signing_secret)
            if signing_secret is None:
                raise not_configured("slack")
            slack.verify(
                signing_secret, x_slack_request_timestamp, x_slack_signature, body, time.time()
            )
            parsed = slack.parse(body, gateway.owners)
            if isinstance(parsed, slack.Challenge):
                return JSONResponse({"challenge": parsed.value})
            return parsed

        return await gateway.handle("slack", request, parse)

    return routes
