"""The gateway's HTTP API: verify and normalise inbound messages, produce, answer.

Every route follows the same steps: the body size limit (middleware, on the raw body),
the channel's authentication on the raw body, parsing, then one event per message
produced through the Publisher. The answer is 202 only once Kafka acknowledged every
event of the request (WhatsApp gets 200, which Meta requires); a refused request gets a
4xx with ``{"error": reason}`` and produces nothing; if Kafka does not acknowledge in
time the answer is 503 with Retry-After, so the sender retries.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any

from fastapi import FastAPI, Header, Path, Query, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from prometheus_client import CollectorRegistry
from pydantic import BaseModel, Field
from pydantic.json_schema import models_json_schema

from pipeline.channels.email import inbound as email
from pipeline.channels.inbound import Inbound, Parsed, bearer_tenant
from pipeline.channels.slack import inbound as slack
from pipeline.channels.web import inbound as web
from pipeline.channels.webhook import inbound as webhook
from pipeline.channels.whatsapp import inbound as whatsapp
from pipeline.config import Settings
from pipeline.errors import BrokerUnavailableError, EventValidationError, InboundRejected
from pipeline.events.model import Event
from pipeline.http.body import BodyLimit
from pipeline.http.json_errors import add_json_errors, error_response
from pipeline.http.readiness import KafkaReadiness
from pipeline.runtime.publisher import Publisher
from pipeline.services.gateway import chat_page, web_chat
from pipeline.services.gateway.dedup import RecentIds
from pipeline.services.gateway.limits import check_limits
from pipeline.services.gateway.metrics import GatewayMetrics
from pipeline.services.gateway.middleware import RequestMetrics, ServerSpans
from pipeline.services.gateway.stream_hub import StreamHub

log = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 5
# What the public /readyz says when not ready: the reason (broker addresses, errors)
# is for operators, on the metrics port.
PUBLIC_NOT_READY = {"status": "unavailable", "reason": "not ready"}
# Wait a little longer than librdkafka's message timeout (set to the publish timeout), so
# that a 503 usually follows librdkafka giving the record up, not merely our impatience.
ACK_MARGIN_SECONDS = 1.0
# What the gateway needs to accept messages; web_outgoing (the streams) is not among
# them: without it streams answer 503 and the reader retries (see stream_hub).
TOPICS = ("message_received", "webhook_received")

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
refused with 403 and the reason. Every other field is passed on verbatim to the webhooks
service as `payload_json`.

**Tenancy**: a web chat `conversation_id` is a name in the tenant's namespace, stored as
`web:<tenant>:<name>`; naming another tenant's (or another channel's) conversation is
refused with 403.
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


BODY_MODELS: tuple[type[BaseModel], ...] = (
    web.WebMessage,
    web.ChatMessage,
    web.ChatTokenRequest,
    slack.SlackEnvelope,
    whatsapp.WhatsAppNotification,
    email.EmailMessage,
    webhook.WebhookCall,
)


def _body(model: type[BaseModel]) -> dict[str, Any]:
    schema = {"$ref": f"#/components/schemas/{model.__name__}"}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    always = (413, 503)
    return {code: {"model": ErrorBody} for code in sorted({*codes, *always})}


class Gateway:
    """What the routes share: settings, the publisher, dedup window, metrics."""

    def __init__(
        self, settings: Settings, registry: CollectorRegistry, publisher: Publisher | None
    ) -> None:
        self.settings = settings
        self.name = settings.service_name or "gateway"
        self.metrics = GatewayMetrics(registry, self.name)
        self.publisher = publisher
        self.recent = RecentIds()
        self.readiness = KafkaReadiness(settings, TOPICS)
        self.ack_timeout = settings.gateway.publish_timeout_seconds + ACK_MARGIN_SECONDS
        # The stream reader's client logs go where the gateway's other clients' do.
        self.hub = StreamHub(settings, self.readiness.connection.client_config())

    async def handle(
        self, channel: str, request: Request, parse: Callable[[bytes], Parsed | Response]
    ) -> Response:
        """Read the body, parse (verification included), produce, answer."""
        body = await request.body()
        try:
            parsed = parse(body)
            if isinstance(parsed, Response):
                return parsed
            check_limits(parsed, self.settings.gateway)
            return await self._produce(channel, parsed, request.headers.get("traceparent"))
        except InboundRejected as exc:
            self.metrics.rejected.labels(channel, str(exc.status)).inc()
            return error_response(exc.status, exc.reason)
        except EventValidationError as exc:
            self.metrics.rejected.labels(channel, "400").inc()
            return error_response(400, f"the message does not fit its event schema: {exc}")
        except BrokerUnavailableError as exc:
            self.metrics.broker_unavailable.labels(channel).inc()
            log.warning("answering 503 on %s: %s", channel, exc)
            return JSONResponse(
                {"error": f"not stored, retry later: {exc}"},
                status_code=503,
                headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
            )

    async def _produce(self, channel: str, parsed: Parsed, traceparent: str | None) -> Response:
        publisher = self.publisher
        if publisher is None:
            raise BrokerUnavailableError("the gateway's Kafka producer is not running yet")
        # Build and encode every event first: one that does not fit its schema refuses
        # the request before anything of it is produced.
        events = [(inbound, self._build(publisher, inbound)) for inbound in parsed.events]
        answers: list[AcceptedEvent] = []
        for inbound, event in events:
            produce = functools.partial(self._publish, publisher, event, traceparent)
            if inbound.event_id is None:
                await produce()
                fresh = True
            else:
                fresh = await self.recent.once(inbound.event_id, produce)
            if not fresh:
                self.metrics.duplicates.labels(channel).inc()
            answers.append(
                AcceptedEvent(
                    event_id=str(event.id),
                    conversation_id=event.conversation_id,
                    duplicate=not fresh,
                )
            )
        produced = any(not a.duplicate for a in answers)
        if produced:
            status, code = "accepted", (200 if channel == "whatsapp" else 202)
        else:
            status, code = ("duplicate" if answers else "ignored"), 200
        body = Accepted(status=status, events=answers, ignored=list(parsed.ignored))
        return JSONResponse(body.model_dump(), status_code=code)

    def _build(self, publisher: Publisher, inbound: Inbound) -> Event:
        event = publisher.build(
            inbound.event_type,
            inbound.data,
            conversation_id=inbound.conversation_id,
            tenant_id=inbound.tenant_id,
            event_id=inbound.event_id,
        )
        publisher.serde.encode(event)  # raises EventValidationError; nothing produced yet
        return event

    async def _publish(self, publisher: Publisher, event: Event, traceparent: str | None) -> None:
        await publisher.publish_event(event, traceparent=traceparent, ack_timeout=self.ack_timeout)
        self.metrics.produced.labels(self.name, self.settings.topic(event.type), event.type).inc()


def _secret(value: Any) -> str | None:
    return None if value is None else str(value.get_secret_value())


def _not_configured(channel: str) -> InboundRejected:
    return InboundRejected(404, f"the {channel} channel is not configured on this gateway")


def create_app(
    settings: Settings,
    *,
    registry: CollectorRegistry | None = None,
    publisher: Publisher | None = None,
) -> FastAPI:
    """The gateway app. Without ``publisher`` one is created at startup and closed at
    shutdown (lifespan), and a background task keeps ``/readyz`` current."""
    registry = registry if registry is not None else CollectorRegistry()
    gw = Gateway(settings, registry, publisher)
    cfg = settings.gateway

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        owned = gw.publisher is None
        if owned:
            connection = gw.readiness.connection
            gw.publisher = Publisher.create(settings, gw.name, connection.client_config())
        checker = asyncio.create_task(gw.readiness.run(), name="kafka-readiness")
        if gw.publisher is not None:
            gw.hub.start(gw.publisher.serde)
        try:
            yield
        finally:
            await gw.hub.stop()
            gw.readiness.stop()
            checker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await checker
            if owned and gw.publisher is not None:
                await gw.publisher.close(settings.drain_timeout_seconds)
                gw.publisher = None

    docs = cfg.public_docs
    app = FastAPI(
        title="pipeline gateway",
        version="1",
        description=DESCRIPTION,
        lifespan=lifespan,
        openapi_url="/openapi.json" if docs else None,
        docs_url="/docs" if docs else None,
        redoc_url="/redoc" if docs else None,
    )
    app.state.gateway = gw

    add_json_errors(app, internal_error="internal error; the request was not stored")

    @app.get("/healthz", tags=["operations"])
    async def healthz() -> JSONResponse:
        """Liveness: the process serves requests."""
        return JSONResponse({"status": "ok", "reason": "serving"})

    @app.get("/readyz", tags=["operations"])
    async def readyz() -> JSONResponse:
        """Readiness: the gateway answers requests, Kafka down included (then with 503
        and Retry-After); not ready while starting or when its topics are missing (why:
        on the metrics port, which also serves the metrics)."""
        ok, reason = gw.readiness.verdict()
        # "degraded": Kafka does not answer, requests get 503 + Retry-After; the details
        # (broker addresses, errors) stay on the metrics port.
        fine = "degraded" if reason.startswith("degraded") else "ready"
        body = {"status": "ok", "reason": fine} if ok else PUBLIC_NOT_READY
        return JSONResponse(body, status_code=200 if ok else 503)

    @app.post(
        "/v1/web/messages",
        tags=["channels"],
        status_code=202,
        response_model=Accepted,
        responses=_errors(400, 401, 403),
        openapi_extra=_body(web.WebMessage),
    )
    async def web_message(
        request: Request, authorization: Annotated[str | None, Header()] = None
    ) -> Response:
        """A web chat message; ``Authorization: Bearer <tenant token>``."""

        def parse(body: bytes) -> Parsed:
            tokens = {tenant: str(_secret(token)) for tenant, token in cfg.web_tokens.items()}
            tenant = bearer_tenant(authorization, tokens)
            return web.parse(body, tenant)

        return await gw.handle("web", request, parse)

    @app.post(
        "/v1/slack/events",
        tags=["channels"],
        status_code=202,
        response_model=Accepted,
        responses=_errors(400, 401, 404),
        openapi_extra=_body(slack.SlackEnvelope),
    )
    async def slack_events(
        request: Request,
        x_slack_request_timestamp: Annotated[str | None, Header()] = None,
        x_slack_signature: Annotated[str | None, Header()] = None,
    ) -> Response:
        """Slack Events API: url_verification and message events (signature v0)."""

        def parse(body: bytes) -> Parsed | Response:
            secret = _secret(cfg.slack_signing_secret)
            if secret is None:
                raise _not_configured("slack")
            slack.verify(secret, x_slack_request_timestamp, x_slack_signature, body, time.time())
            parsed = slack.parse(body, cfg.slack_tenant)
            if isinstance(parsed, slack.Challenge):
                return JSONResponse({"challenge": parsed.value})
            return parsed

        return await gw.handle("slack", request, parse)

    @app.get(
        "/v1/whatsapp/webhook",
        tags=["channels"],
        response_class=PlainTextResponse,
        responses=_errors(400, 403, 404),
    )
    async def whatsapp_handshake(
        mode: Annotated[str | None, Query(alias="hub.mode")] = None,
        token: Annotated[str | None, Query(alias="hub.verify_token")] = None,
        challenge: Annotated[str | None, Query(alias="hub.challenge")] = None,
    ) -> Response:
        """WhatsApp webhook verification: echoes ``hub.challenge`` for the right token."""
        try:
            expected = _secret(cfg.whatsapp_verify_token)
            if expected is None:
                raise _not_configured("whatsapp")
            return PlainTextResponse(whatsapp.handshake(mode, token, challenge, expected))
        except InboundRejected as exc:
            gw.metrics.rejected.labels("whatsapp", str(exc.status)).inc()
            return error_response(exc.status, exc.reason)

    @app.post(
        "/v1/whatsapp/webhook",
        tags=["channels"],
        status_code=200,
        response_model=Accepted,
        responses=_errors(400, 401, 404),
        openapi_extra=_body(whatsapp.WhatsAppNotification),
    )
    async def whatsapp_notification(
        request: Request,
        x_hub_signature_256: Annotated[str | None, Header()] = None,
    ) -> Response:
        """WhatsApp Cloud API notifications (messages and statuses), X-Hub-Signature-256."""

        def parse(body: bytes) -> Parsed:
            secret = _secret(cfg.whatsapp_app_secret)
            if secret is None:
                raise _not_configured("whatsapp")
            whatsapp.verify(secret, x_hub_signature_256, body)
            return whatsapp.parse(body, cfg.whatsapp_tenant)

        return await gw.handle("whatsapp", request, parse)

    @app.post(
        "/v1/email/inbound",
        tags=["channels"],
        status_code=202,
        response_model=Accepted,
        responses=_errors(400, 401, 403, 404),
        openapi_extra=_body(email.EmailMessage),
    )
    async def email_inbound(
        request: Request, authorization: Annotated[str | None, Header()] = None
    ) -> Response:
        """An email normalised by a mail relay; ``Authorization: Bearer <relay token>``."""

        def parse(body: bytes) -> Parsed:
            relays = cfg.relays()
            if not relays:
                raise _not_configured("email")
            name = bearer_tenant(
                authorization, {n: str(_secret(r.token)) for n, r in relays.items()}
            )
            relay = relays[name]
            return email.parse(
                body,
                relay.tenant,
                require_authentication=relay.require_authentication,
                authserv_id=relay.authserv_id,
            )

        return await gw.handle("email", request, parse)

    async def webhook_call(
        request: Request,
        source: Annotated[str, Path(min_length=1, max_length=128)],
        x_signature_256: Annotated[str | None, Header()] = None,
        x_webhook_timestamp: Annotated[str | None, Header()] = None,
    ) -> Response:
        """A signed call from an external system (see the description above)."""

        def parse(body: bytes) -> Parsed:
            sources = {
                name: webhook.Source(str(_secret(s.secret)), s.tenants, s.conversation_prefixes)
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
            return webhook.parse(source, found, body)

        return await gw.handle("webhook", request, parse)

    web_chat.add_routes(app, web_chat.WebChat(gw, gw.hub), _errors(400, 401, 403, 404, 429))
    chat_page.add_routes(app)

    # /webhooks/{source} is the path of the first design, kept for senders configured so.
    for path, listed in (("/v1/webhooks/{source}", True), ("/webhooks/{source}", False)):
        app.post(
            path,
            include_in_schema=listed,
            tags=["webhooks"],
            status_code=202,
            response_model=Accepted,
            responses=_errors(400, 401, 403, 404),
            openapi_extra=_body(webhook.WebhookCall),
        )(webhook_call)

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
    app.add_middleware(BodyLimit, max_bytes=cfg.max_body_bytes)
    app.add_middleware(RequestMetrics, metrics=gw.metrics)
    app.add_middleware(ServerSpans)  # outermost: the span covers the whole request
    return app


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
