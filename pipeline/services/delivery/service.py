"""The delivery service: response_ready -> the channel's API, and delivery_status.

One handler sends each response, retrying inside the handler: the runtime runs other
conversations meanwhile (each conversation is its own lane), and only the handler knows
what the channel answered (Retry-After, which statuses are worth a retry). Each attempt
that will be retried is reported at once (a ``retrying`` status); the final ``sent`` or
``failed`` status goes out with the handler's outputs. A failed send is dead-lettered.
A waiting handler holds one of the runtime's in-flight slots; if its partition is
revoked meanwhile, it hands the response back to the next owner instead of sending.

Not sending twice rests on the sent store (:mod:`.sent_store`), a compacted topic restored
on assignment: each attempt is written to it, and acknowledged, once its turn to send has
come and before it goes out (awaited through the runtime's publisher, not batched with
the outputs); the channel's answer as soon as it comes: a refusal or failure awaited
likewise, a ``sent`` with the handler's outputs, beside the status, so the response's
offset commits only once it is stored (one wait per send instead of two). A
response handled again after a crash, restart or rebalance is skipped when it was sent;
one with an attempt and no answer is uncertain, and resolved as its channel allows
(:mod:`.uncertain`): web sends again with the same ``Idempotency-Key`` (the response event
id; the e-mail Message-ID likewise), Slack looks for the response id in the message
metadata first, WhatsApp and e-mail follow their guarantee setting. In exactly-once mode
the records are readable only once the transaction commits: there the window runs to the
commit.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, NoReturn

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport
from opentelemetry.trace import SpanKind

from pipeline.channels.email.outbound import EmailSender
from pipeline.channels.outbound import (
    Outcome,
    PermanentFailure,
    Retryable,
    Sender,
    Sent,
    bounded,
)
from pipeline.channels.slack.outbound import SlackSender
from pipeline.channels.web.outbound import WebSender, callback_client
from pipeline.channels.web.stream_log import STREAM_EVENT
from pipeline.channels.web.stream_sender import StreamSender, WebReplies
from pipeline.channels.whatsapp.outbound import WhatsAppSender
from pipeline.config import Settings
from pipeline.config.sections import DeliverySettings
from pipeline.errors import PipelineError, RejectEvent
from pipeline.events.model import Event, to_millis
from pipeline.retry import RetryPolicy
from pipeline.runtime.context import Context
from pipeline.runtime.publisher import Publisher
from pipeline.runtime.service import Service
from pipeline.runtime.spans import failed, span
from pipeline.services.delivery.metrics import DeliveryMetrics
from pipeline.services.delivery.sent_store import (
    ATTEMPTED,
    FAILED,
    REFUSED,
    SENT,
    UNCONFIRMED,
    SentEntry,
    SentStore,
    encode_entry,
    read_changelog,
)
from pipeline.services.delivery.uncertain import (
    Found,
    Resend,
    Unconfirmed,
    guarantee_of,
    resolve,
)

log = logging.getLogger("pipeline.delivery")

STATUS = "delivery_status"

# Each send waits for two records' acknowledgements in a row (the attempt, the answer):
# a record sent at once instead of after linger.ms (5 ms) saves that wait twice per send
# when traffic is light, and under load records still share the requests that go out
# while earlier ones are in flight.
PRODUCER_DEFAULTS = {"linger.ms": 0}


def build(
    settings: Settings | None = None, *, senders: Mapping[str, Sender] | None = None
) -> Service:
    """The delivery service (``pipeline run delivery``).

    ``senders`` (channel -> adapter) replaces the built-in adapters, for tests and for
    channels of your own.
    """
    service = Service(
        "delivery",
        settings=settings,
        emits=[STATUS, STREAM_EVENT],
        producer_defaults=PRODUCER_DEFAULTS,
    )
    # The outcome of each send is logged here and published as a delivery_status; httpx's
    # own line per request would repeat it hundreds of times a second under load.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    delivery = Delivery(service, senders)
    service.handler("response_ready", name="on_response_ready")(delivery.on_response_ready)
    service.on_assign(delivery.restore)
    service.on_revoke(delivery.forget)
    service.background(delivery.attach)
    return service


def default_senders(
    settings: Settings,
    client: httpx.AsyncClient,
    callbacks: httpx.AsyncClient,
    publisher: Callable[[], Publisher | None] = lambda: None,
) -> dict[str, Sender]:
    """The built-in adapters, one per channel: the channel APIs share ``client``; web
    callbacks, whose URLs come from clients, go through ``callbacks``, a client that
    enforces the egress policy (:func:`pipeline.channels.web.outbound.callback_client`);
    web replies without a callback URL are written to the stream topic by ``publisher``.
    """
    section = settings.delivery
    return {
        "web": WebReplies(
            WebSender.from_settings(section, callbacks),
            StreamSender(settings, publisher, section.timeout_seconds),
        ),
        "slack": SlackSender(section, client),
        "whatsapp": WhatsAppSender(section, client),
        "email": EmailSender(section),
    }


HTTP_CHANNELS = ("slack", "whatsapp")  # share the HTTP client (web has its own)


def http_client(section: DeliverySettings) -> httpx.AsyncClient:
    """The HTTP client the channel adapters share: httpx's interface on aiohttp's pool.

    The adapters speak httpx (requests, responses, its errors), but the requests go out
    through aiohttp (``httpx-aiohttp``): httpcore's pool checks every pooled connection's
    socket on each request and parses HTTP in Python, which made the HTTP client most of
    the delivery service's CPU per response, and the service the first to saturate. The
    pool holds as many connections as the channels may use at once, so under load a
    connection is reused instead of closed after its request and opened again.
    """
    connections = sum(section.concurrent_sends(channel) for channel in HTTP_CHANNELS)
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)

    def session() -> aiohttp.ClientSession:
        # Made on the first request, inside the running loop. trust_env: proxies from
        # HTTP(S)_PROXY and NO_PROXY, as a plain httpx client takes them.
        connector = aiohttp.TCPConnector(
            limit=connections,
            keepalive_timeout=limits.keepalive_expiry,
            ssl=httpx.create_ssl_context(),
        )
        return aiohttp.ClientSession(connector=connector, trust_env=True)

    return httpx.AsyncClient(
        timeout=httpx.Timeout(section.timeout_seconds),
        headers={"User-Agent": "pipeline-delivery"},
        limits=limits,
        transport=AiohttpTransport(client=session),
    )


class Delivery:
    """The handler and hooks of the delivery service, and what they share."""

    def __init__(self, service: Service, senders: Mapping[str, Sender] | None = None) -> None:
        self.settings = service.settings
        self.section = service.settings.delivery
        self.name = service.name
        self.registry = service.registry
        self.policy = RetryPolicy(
            max_attempts=self.section.max_attempts,
            initial_seconds=self.section.backoff_initial_seconds,
            max_seconds=self.section.backoff_max_seconds,
            retry_after_max_seconds=self.section.retry_after_max_seconds,
        )
        self.store = SentStore(self.section.sent_ids_per_conversation)
        self.metrics = DeliveryMetrics(service.registry, service.name)
        self.publisher: Publisher | None = None
        # Partitions this instance owns; None until the runtime assigns any (in tests).
        self.owned: set[int] | None = None
        self._custom_senders = dict(senders) if senders is not None else None
        self._senders: dict[str, Sender] | None = self._custom_senders
        self._client: httpx.AsyncClient | None = None
        self._callback_client: httpx.AsyncClient | None = None
        # Sends in progress per channel. Beyond the limit a handler waits here, on a cheap
        # asyncio semaphore, rather than in the HTTP pool, whose queue costs work per
        # waiting request each time a connection frees up.
        self._sending: dict[str, asyncio.Semaphore] = {}

    # ------------------------------------------------------------------ handler

    async def on_response_ready(self, event: Event, ctx: Context) -> None:
        """Send one response, retrying with backoff; report each attempt's outcome.

        Each attempt is recorded in the sent store (acknowledged) before it goes out and
        its answer as soon as it comes; an attempt without a recorded answer is resolved
        as its channel allows (:mod:`pipeline.services.delivery.uncertain`).
        """
        channel = str(event["reply_to"]["channel"])
        response_id = str(event.id)
        known = self.store.get(ctx.partition, event.conversation_id, response_id)
        if known is not None and known.state in (SENT, UNCONFIRMED):
            # Handled again after a crash or rebalance: report it as before, do not send.
            # Emitted first, like the original, so the status has the same event id.
            self.metrics.count(channel, "duplicate")
            log.info("response %s was already handled (%s); not again", response_id, known.state)
            self._status(
                ctx,
                event,
                known.state,
                known.attempt,
                provider_id=known.provider_message_id,
                error=known.error,
            )
            return
        sender = self.senders().get(channel)
        if sender is None:
            self._fail(ctx, event, 1, f"no outbound adapter for channel {channel!r}", None)

        sending = self._sending.get(channel)
        if sending is None:
            sending = self._sending[channel] = asyncio.Semaphore(
                self.section.concurrent_sends(channel)
            )
        # An answered attempt (refused) counts on; a failed response starts afresh (a
        # dead letter redriven).
        attempt = 0 if known is None or known.state == FAILED else known.attempt
        uncertain = known if known is not None and known.uncertain else None
        guarantee = guarantee_of(self.section, channel)
        while True:
            attempt += 1
            outcome: Retryable | PermanentFailure
            if uncertain is not None:
                self.metrics.count(channel, "uncertain")
                resolution = await resolve(
                    sender, event, uncertain.attempt, uncertain.sent_at_ms, guarantee
                )
                if isinstance(resolution, Found):
                    log.info("response %s was found in %s: not sent again", event.id, channel)
                    await self._sent(ctx, event, uncertain.attempt, resolution.outcome)
                    return
                if isinstance(resolution, Unconfirmed):
                    await self._unconfirmed(ctx, event, uncertain.attempt, resolution.reason)
                    return
                if isinstance(resolution, Resend):
                    log.info("response %s: %s", event.id, resolution.reason)
                    uncertain = None
                else:
                    # The lookup failed; the attempt stays uncertain (also for a redrive).
                    outcome = resolution
            if uncertain is None:
                attempted = self._entry(event, ATTEMPTED, attempt)
                answer = await self._send(ctx, event, sender, sending, attempted)
                if isinstance(answer, Sent):
                    await self._sent(ctx, event, attempt, answer)
                    return
                outcome = answer
                if isinstance(outcome, Retryable) and outcome.uncertain:
                    uncertain = attempted
                else:
                    # The channel answered: the attempt did not arrive.
                    state = FAILED if isinstance(outcome, PermanentFailure) else REFUSED
                    entry = self._entry(event, state, attempt, error=outcome.error)
                    await self._record(ctx, event, entry)
            if isinstance(outcome, PermanentFailure):
                self._fail(ctx, event, attempt, outcome.error, outcome.http_status)
            if self.policy.exhausted(attempt):
                self._fail(
                    ctx,
                    event,
                    attempt,
                    f"gave up after {attempt} attempts: {outcome.error}",
                    outcome.http_status,
                )
            await self._retry_later(ctx, event, attempt, outcome)
            if self.owned is not None and ctx.partition not in self.owned:
                # Revoked while waiting (the drain deadline passed): the next owner
                # handles the response from the committed offset; sending here too
                # would race it.
                log.info("partition %d revoked; response %s handed back", ctx.partition, event.id)
                return

    async def _send(
        self,
        ctx: Context,
        event: Event,
        sender: Sender,
        sending: asyncio.Semaphore,
        attempted: SentEntry,
    ) -> Outcome:
        """One attempt, within the channel's bound on sends in progress: recorded (and
        acknowledged) once its turn has come, then sent. Only the sends in progress at
        a crash are uncertain, not those waiting their turn."""
        channel = attempted.channel
        attributes: dict[str, str | int] = {
            "pipeline.channel": channel,
            "pipeline.attempt": attempted.attempt,
        }
        async with sending:
            await self._record(ctx, event, attempted)
            started = time.perf_counter()
            with span(f"deliver {channel}", attributes, kind=SpanKind.CLIENT) as sending_span:
                outcome = bounded(await sender.send(event))
                if outcome.http_status is not None:
                    sending_span.set_attribute("http.response.status_code", outcome.http_status)
                if not isinstance(outcome, Sent):
                    failed(sending_span, outcome.error)
        self.metrics.observe_send(channel, time.perf_counter() - started)
        return outcome

    @staticmethod
    def _entry(
        event: Event,
        state: str,
        attempt: int,
        *,
        provider_id: str | None = None,
        error: str | None = None,
    ) -> SentEntry:
        return SentEntry(
            str(event.id),
            str(event["reply_to"]["channel"]),
            attempt,
            provider_id,
            to_millis(datetime.now(UTC)),
            state,
            error,
        )

    def _record_with_outputs(self, ctx: Context, event: Event, entry: SentEntry) -> None:
        """Write ``entry`` with the handler's outputs, beside its status, not awaited.

        For a ``sent`` answer: the response's offset commits only once both are
        acknowledged, so a crash before then finds the attempt without an answer, as a
        crash before an awaited write of it would; the next record of the conversation
        (the next response's attempt) goes out through the same producer after it, so
        the compacted topic keeps the newer value.
        """
        partition, conversation = ctx.partition, event.conversation_id
        encoded = encode_entry(entry)
        value = self.store.value_with(partition, conversation, entry, encoded)
        ctx.emit_record(self.section.sent_topic, conversation, value, kind="delivery_sent")
        if self.owned is None or partition in self.owned:
            self.store.record(partition, conversation, entry, encoded)

    async def _record(self, ctx: Context, event: Event, entry: SentEntry) -> None:
        """Write ``entry`` to the sent store's topic and wait for the broker's ack.

        An attempt that cannot be recorded is not made (the error fails the handler, which
        the runtime retries). An answer that cannot be recorded at once goes out with the
        handler's outputs, still before the response's offset commits.
        """
        partition, conversation = ctx.partition, event.conversation_id
        encoded = encode_entry(entry)
        value = self.store.value_with(partition, conversation, entry, encoded)
        if self.publisher is not None:
            try:
                await self.publisher.publish_record(self.section.sent_topic, conversation, value)
            except PipelineError as exc:
                if entry.state == ATTEMPTED:
                    raise
                log.warning("sent store record written with the outputs instead: %s", exc)
                ctx.emit_record(self.section.sent_topic, conversation, value, kind="delivery_sent")
        else:
            ctx.emit_record(self.section.sent_topic, conversation, value, kind="delivery_sent")
        if self.owned is None or partition in self.owned:
            # (A partition revoked meanwhile is not remembered here again.)
            self.store.record(partition, conversation, entry, encoded)

    async def _sent(self, ctx: Context, event: Event, attempt: int, outcome: Sent) -> None:
        entry = self._entry(event, SENT, attempt, provider_id=outcome.provider_message_id)
        channel = entry.channel
        self.metrics.count(channel, "sent")
        ingress_at = event.get("ingress_at")
        if isinstance(ingress_at, datetime):
            latency = max(0.0, (datetime.now(UTC) - ingress_at).total_seconds())
            self.metrics.observe_turn(channel, latency)
        # The status first, as a repeat emits it (the same event id), then the answer.
        self._status(
            ctx,
            event,
            "sent",
            attempt,
            http_status=outcome.http_status,
            provider_id=outcome.provider_message_id,
        )
        self._record_with_outputs(ctx, event, entry)

    async def _unconfirmed(self, ctx: Context, event: Event, attempt: int, reason: str) -> None:
        """At-most-once: the uncertain attempt is not repeated, and the status says so."""
        entry = self._entry(event, UNCONFIRMED, attempt, error=reason)
        await self._record(ctx, event, entry)
        self.metrics.count(entry.channel, UNCONFIRMED)
        log.warning("response %s %s", event.id, reason)
        self._status(ctx, event, UNCONFIRMED, attempt, error=reason)

    def _fail(
        self, ctx: Context, event: Event, attempt: int, error: str, http_status: int | None
    ) -> NoReturn:
        """Report the failure, then dead-letter the response (the status still goes out)."""
        self.metrics.count(str(event["reply_to"]["channel"]), "failed")
        self._status(ctx, event, "failed", attempt, http_status=http_status, error=error)
        raise RejectEvent(f"delivery of response {event.id} failed: {error}", stage="delivery")

    async def _retry_later(
        self, ctx: Context, event: Event, attempt: int, outcome: Retryable
    ) -> None:
        delay = self.policy.delay(attempt, outcome.retry_after)
        next_at = datetime.now(UTC) + timedelta(seconds=delay)
        self.metrics.count(str(event["reply_to"]["channel"]), "retrying")
        data = self._status_data(
            event,
            "retrying",
            attempt,
            http_status=outcome.http_status,
            error=outcome.error,
            next_attempt_at=next_at,
        )
        log.info(
            "response %s attempt %d failed (%s); next attempt in %.2fs",
            event.id,
            attempt,
            outcome.error,
            delay,
        )
        await self._report_now(ctx, event, data, attempt)
        await asyncio.sleep(max(0.0, (next_at - datetime.now(UTC)).total_seconds()))

    async def _report_now(
        self, ctx: Context, event: Event, data: dict[str, Any], attempt: int
    ) -> None:
        """Publish a ``retrying`` status now, not after the retries: whoever watches
        sees a send that is waiting. Its id derives from the response and the attempt, so
        a repeat after a crash repeats the same event."""
        if self.publisher is not None:
            try:
                await self.publisher.publish(
                    STATUS,
                    data,
                    conversation_id=event.conversation_id,
                    tenant_id=event.metadata.tenant_id,
                    cause=event,
                    event_id=uuid.uuid5(event.id, f"{self.name}/retrying/{attempt}"),
                    traceparent=ctx.traceparent,
                )
                return
            except PipelineError as exc:
                log.warning("retrying status published with the outputs instead: %s", exc)
        ctx.emit(STATUS, data)

    def _status(
        self,
        ctx: Context,
        event: Event,
        state: str,
        attempt: int,
        *,
        http_status: int | None = None,
        provider_id: str | None = None,
        error: str | None = None,
    ) -> None:
        ctx.emit(
            STATUS,
            self._status_data(
                event,
                state,
                attempt,
                http_status=http_status,
                provider_id=provider_id,
                error=error,
            ),
        )

    @staticmethod
    def _status_data(
        event: Event,
        state: str,
        attempt: int,
        *,
        http_status: int | None = None,
        provider_id: str | None = None,
        error: str | None = None,
        next_attempt_at: datetime | None = None,
    ) -> dict[str, Any]:
        return {
            "response_id": str(event.id),
            "channel": event["reply_to"]["channel"],
            "state": state,
            "attempt": attempt,
            "http_status": http_status,
            "provider_message_id": provider_id,
            "error": error,
            "next_attempt_at": next_attempt_at,
        }

    # ------------------------------------------------------------------ resources

    def senders(self) -> Mapping[str, Sender]:
        if self._senders is None:
            self._client = http_client(self.section)
            # Web callbacks go to URLs that come from clients: through the client that
            # enforces the egress policy, never the shared pool.
            self._callback_client = callback_client(self.section)
            self._senders = default_senders(
                self.settings, self._client, self._callback_client, lambda: self.publisher
            )
        return self._senders

    async def attach(self, publisher: Publisher) -> None:
        """Background task: keep the runtime's publisher for ``retrying`` statuses."""
        self.publisher = publisher
        await asyncio.Event().wait()

    # ------------------------------------------------------------------ hooks

    async def restore(self, partitions: list[tuple[str, int]]) -> None:
        """Read what was sent for the assigned partitions before handling any of them."""
        numbers = sorted({p for _, p in partitions})
        if not numbers:
            return
        changelog = self.settings.topic(self.section.sent_topic)
        started = time.monotonic()
        values = await asyncio.to_thread(
            read_changelog,
            {
                **self.settings.consumer_config(),
                "group.id": f"{self.settings.topic_prefix}{self.name}-restore",
                "client.id": f"{self.name}-restore",
            },
            changelog,
            self.settings.topic("response_ready"),
            numbers,
            self.section.restore_timeout_seconds,
        )
        for partition, by_conversation in values.items():
            self.store.load(partition, by_conversation)
        self.owned = (self.owned or set()) | set(numbers)
        log.info(
            "restored %d conversations' sent responses of %s%s in %.2fs",
            sum(len(v) for v in values.values()),
            changelog,
            numbers,
            time.monotonic() - started,
        )

    async def forget(self, partitions: list[tuple[str, int]]) -> None:
        """Drop revoked partitions; with none left, release the HTTP client."""
        gone = {p for _, p in partitions}
        self.store.drop(gone)
        self.owned = (self.owned or set()) - gone
        if not self.owned and self._client is not None:
            client, self._client = self._client, None
            callbacks, self._callback_client = self._callback_client, None
            self._senders = self._custom_senders
            await client.aclose()
            if callbacks is not None:
                await callbacks.aclose()
