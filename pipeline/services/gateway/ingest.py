"""How a request becomes events: verify and parse it, produce, answer.

Every channel's route follows the same steps: the body size limit (middleware, on the
raw body), the channel's authentication on the raw body, parsing, the limits on what it
parsed into, the tenants' request rates (429 with Retry-After), then one event per
message produced through the Publisher. The answer is 202 only once Kafka acknowledged
every event of the request (WhatsApp gets 200, which Meta requires); a refused request
gets a 4xx with ``{"error": reason}`` and produces nothing; if Kafka does not
acknowledge in time the answer is 503 with Retry-After, so the sender retries.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CollectorRegistry

from pipeline.channels.inbound import Inbound, Parsed
from pipeline.channels.tenancy import ChannelOwners
from pipeline.config import Settings
from pipeline.errors import BrokerUnavailableError, EventValidationError, InboundRejected
from pipeline.events.model import Event
from pipeline.http.json_errors import error_response
from pipeline.http.readiness import KafkaReadiness
from pipeline.runtime.publisher import Publisher
from pipeline.services.gateway.api import Accepted, AcceptedEvent
from pipeline.services.gateway.dedup import RecentIds
from pipeline.services.gateway.limits import check_limits
from pipeline.services.gateway.metrics import GatewayMetrics
from pipeline.services.gateway.rate_limits import TenantRateLimits
from pipeline.services.gateway.stream_hub import StreamHub

log = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 5
# Wait a little longer than librdkafka's message timeout (set to the publish timeout), so
# that a 503 usually follows librdkafka giving the record up, not merely our impatience.
ACK_MARGIN_SECONDS = 1.0
# What the gateway needs to accept messages; web_outgoing (the streams) is not among
# them: without it streams answer 503 and the reader retries (see stream_hub).
TOPICS = ("message_received", "webhook_received")

Parse = Callable[[bytes], Parsed | Response]


class Gateway:
    """What the routes share: settings, the channels' owners, the publisher, dedup
    window, metrics, readiness and the streams' hub."""

    def __init__(
        self, settings: Settings, registry: CollectorRegistry, publisher: Publisher | None
    ) -> None:
        self.settings = settings
        self.name = settings.service_name or "gateway"
        self.metrics = GatewayMetrics(registry, self.name)
        self.owners = ChannelOwners.from_settings(settings.gateway)
        self.rate_limits = TenantRateLimits(settings.gateway.rate_limits)
        self.publisher = publisher
        self.recent = RecentIds()
        self.readiness = KafkaReadiness(settings, TOPICS)
        self.ack_timeout = settings.gateway.publish_timeout_seconds + ACK_MARGIN_SECONDS
        # The stream reader's client logs go where the gateway's other clients' do.
        self.hub = StreamHub(settings, self.readiness.connection.client_config())

    @contextlib.asynccontextmanager
    async def lifespan(self, app: FastAPI) -> AsyncIterator[None]:
        """The app's lifespan: without a publisher given, one is created at startup and
        closed at shutdown; the readiness check and the streams' reader run meanwhile."""
        owned = self.publisher is None
        if owned:
            connection = self.readiness.connection
            self.publisher = Publisher.create(self.settings, self.name, connection.client_config())
        checker = asyncio.create_task(self.readiness.run(), name="kafka-readiness")
        if self.publisher is not None:
            self.hub.start(self.publisher.serde)
        try:
            yield
        finally:
            await self.hub.stop()
            self.readiness.stop()
            checker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await checker
            if owned and self.publisher is not None:
                await self.publisher.close(self.settings.drain_timeout_seconds)
                self.publisher = None

    async def handle(self, channel: str, request: Request, parse: Parse) -> Response:
        """Read the body, parse (verification included), produce, answer."""
        body = await request.body()
        try:
            parsed = parse(body)
            if isinstance(parsed, Response):
                return parsed
            check_limits(parsed, self.settings.gateway)
            self.rate_limits.spend(inbound.tenant_id for inbound in parsed.events)
            return await self._produce(channel, parsed, request.headers.get("traceparent"))
        except InboundRejected as exc:
            return self.rejected(channel, exc)
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

    def rejected(self, channel: str, exc: InboundRejected) -> Response:
        """Count a refusal on ``channel`` and answer it with its status and reason."""
        self.metrics.rejected.labels(channel, str(exc.status)).inc()
        answer = error_response(exc.status, exc.reason)
        if exc.retry_after is not None:
            answer.headers["Retry-After"] = str(exc.retry_after)
        return answer

    async def _produce(self, channel: str, parsed: Parsed, traceparent: str | None) -> Response:
        publisher = self.publisher
        if publisher is None:
            raise BrokerUnavailableError("the gateway's Kafka producer is not running yet")
        # Build and encode every event first: one that does not fit its schema refuses
        # the request before anything of it is produced.
        events = [(inbound, *self._build(publisher, inbound)) for inbound in parsed.events]
        answers: list[AcceptedEvent] = []
        for inbound, event, value in events:
            produce = functools.partial(self._publish, publisher, event, value, traceparent)
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

    def _build(self, publisher: Publisher, inbound: Inbound) -> tuple[Event, bytes]:
        """The event and its encoded value (encoding it checks it fits its schema)."""
        event = publisher.build(
            inbound.event_type,
            inbound.data,
            conversation_id=inbound.conversation_id,
            tenant_id=inbound.tenant_id,
            event_id=inbound.event_id,
        )
        value = publisher.serde.encode(event)  # raises EventValidationError; nothing produced
        return event, value

    async def _publish(
        self, publisher: Publisher, event: Event, value: bytes, traceparent: str | None
    ) -> None:
        await publisher.publish_event(
            event, traceparent=traceparent, ack_timeout=self.ack_timeout, encoded=value
        )
        self.metrics.produced.labels(self.name, self.settings.topic(event.type), event.type).inc()


def secret(value: Any) -> str | None:
    """The text of a secret setting, None when unset."""
    return None if value is None else str(value.get_secret_value())


def not_configured(channel: str) -> InboundRejected:
    return InboundRejected(404, f"the {channel} channel is not configured on this gateway")
