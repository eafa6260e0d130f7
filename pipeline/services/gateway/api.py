"""The gateway's API as its documentation describes it: the description, the answer
bodies, the request bodies of each channel, and the documentation pages."""

from __future__ import annotations

import json
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, Field
from pydantic.json_schema import models_json_schema

from pipeline.channels.email import inbound as email
from pipeline.channels.slack import inbound as slack
from pipeline.channels.web import inbound as web
from pipeline.channels.webhook import inbound as webhook
from pipeline.channels.whatsapp import inbound as whatsapp

DESCRIPTION = """\
Inbound channels of the agent pipeline. Each accepted request is stored in Kafka
before it is answered: **202** means the events are acknowledged by the broker, **503**
(with `Retry-After`) means they are not and the request should be retried. Refused
requests get a 4xx with `{"error": "<reason>"}` and produce nothing.

**Generic webhooks** (`POST /v1/webhooks/{source}`): send the header
`X-Webhook-Timestamp: <Unix time in seconds>` and sign `<timestamp>.<raw body>` (the
header's value, a dot, the body's bytes) with the source's secret:
`X-Signature-256: sha256=<hex HMAC-SHA256>`. A timestamp more than five minutes from the
gateway's clock is refused (401), so a captured call cannot be replayed. The body is a
JSON object with `event` (what happened, e.g. `ticket.resolved`), `conversation_id` (the
conversation it concerns, as the gateway reported it, e.g. `web:<tenant>:<name>`), `id`
(required: your delivery id; every delivery with the same id is one event, however often
it is sent) and `tenant` (optional when the source serves one tenant). A source may only
address the tenants (and conversation-id prefixes) configured for it; anything else is
refused with 403 and the reason; so is a Slack, WhatsApp, email or web conversation of
another tenant than the call's. Every other field is passed on verbatim to the webhooks
service as `payload_json`.

**Tenancy**: a web chat `conversation_id` is a name in the tenant's namespace, stored as
`web:<tenant>:<name>`; naming another tenant's (or another channel's) conversation is
refused with 403. A Slack or WhatsApp conversation belongs to the tenant configured for
its workspace or number, an email conversation (`email:<tenant>:...`) to its relay's.

**Limits**: past a tenant's request rate the answer is **429** with `Retry-After`; past
the open streams allowed a conversation, a tenant or a client, 429; past the server's
connections, 503 with `Retry-After`; headers not sent within the header timeout, 408.
"""


class ErrorBody(BaseModel):
    error: str = Field(description="Why the request was refused.")


class AcceptedEvent(BaseModel):
    event_id: str
    conversation_id: str
    duplicate: bool = Field(description="A retry of an already stored event; not produced.")


class Accepted(BaseModel):
    status: str = Field(description="accepted, duplicate or ignored.")
    events: list[AcceptedEvent] = Field(default_factory=list)
    ignored: list[str] = Field(default_factory=list, description="Parts not turned into events.")


# The routes read their raw bodies (signatures are over the bytes), so FastAPI cannot see
# these models: the documentation gets them from here.
BODY_MODELS: tuple[type[BaseModel], ...] = (
    web.WebMessage,
    web.ChatMessage,
    web.ChatTokenRequest,
    slack.SlackEnvelope,
    whatsapp.WhatsAppNotification,
    email.EmailMessage,
    webhook.WebhookCall,
)


def request_body(model: type[BaseModel]) -> dict[str, Any]:
    """A route's ``openapi_extra``: its JSON body is ``model``."""
    schema = {"$ref": f"#/components/schemas/{model.__name__}"}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """A route's ``responses``: ``codes`` and every route's 413, 429 and 503, as ErrorBody."""
    always = (413, 429, 503)
    return {code: {"model": ErrorBody} for code in sorted({*codes, *always})}


def document_request_bodies(app: FastAPI) -> None:
    """Make ``app``'s OpenAPI document include :data:`BODY_MODELS`."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            _, defs = models_json_schema(
                [(m, "validation") for m in BODY_MODELS],
                ref_template="#/components/schemas/{model}",
            )
            schema.setdefault("components", {}).setdefault("schemas", {}).update(
                defs.get("$defs", {})
            )
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def docs_routes(app: FastAPI) -> dict[str, tuple[str, bytes]]:
    """``/openapi.json``, ``/docs`` and ``/redoc`` of ``app`` as (content type, body), for
    the metrics port: the public port serves them only with ``public_docs``."""
    title = app.title
    openapi = json.dumps(app.openapi()).encode()
    swagger = get_swagger_ui_html(openapi_url="/openapi.json", title=title)
    redoc = get_redoc_html(openapi_url="/openapi.json", title=title)
    return {
        "/openapi.json": ("application/json", openapi),
        "/docs": (_HTML, _html(swagger)),
        "/redoc": (_HTML, _html(redoc)),
    }


_HTML = "text/html; charset=utf-8"


def _html(response: HTMLResponse) -> bytes:
    return bytes(response.body)
