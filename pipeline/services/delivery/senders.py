"""The channels a response goes out on, and the one place it is sent.

:class:`ChannelSenders` holds an adapter per channel (the built-in ones of
:func:`default_senders`, made on first use, or the caller's own), the HTTP clients they
share, and a bound on the sends in progress per channel. :meth:`ChannelSenders.send` is
every call to a channel's API: its attempt is recorded once its turn has come and before
it goes out, then it is sent, traced and timed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping

import httpx
from opentelemetry.trace import SpanKind

from pipeline.channels.email.outbound import EmailSender
from pipeline.channels.outbound import Outcome, Sender, Sent, bounded
from pipeline.channels.slack.outbound import SlackSender
from pipeline.channels.web.outbound import WebSender, callback_client
from pipeline.channels.web.stream_sender import StreamSender, WebReplies
from pipeline.channels.whatsapp.outbound import WhatsAppSender
from pipeline.config import Settings
from pipeline.config.sections import DeliverySettings
from pipeline.egress import EgressPolicy, guarded_client
from pipeline.events.model import Event
from pipeline.runtime.publisher import Publisher
from pipeline.runtime.spans import failed, span
from pipeline.services.delivery.metrics import DeliveryMetrics

HTTP_CHANNELS = ("slack", "whatsapp")  # share the HTTP client (web has its own)


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


def http_client(section: DeliverySettings) -> httpx.AsyncClient:
    """The HTTP client the channel adapters share: httpx's interface on aiohttp's pool,
    through the egress policy (:mod:`pipeline.egress`).

    The adapters speak httpx (requests, responses, its errors), but the requests go out
    through aiohttp (``httpx-aiohttp``): httpcore's pool checks every pooled connection's
    socket on each request and parses HTTP in Python, which made the HTTP client most of
    the delivery service's CPU per response, and the service the first to saturate. The
    pool holds as many connections as the channels may use at once, so under load a
    connection is reused instead of closed after its request and opened again. Every
    connection goes to a checked address: public, or in ``api_allowed_networks``; no
    redirect is followed; the environment's proxy is used only with
    ``proxy_from_environment``.
    """
    connections = sum(section.concurrent_sends(channel) for channel in HTTP_CHANNELS)
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    # The base URLs come from the settings, whatever their scheme: only addresses matter.
    policy = EgressPolicy.of(True, section.api_allowed_networks)
    return guarded_client(
        policy,
        timeout=section.timeout_seconds,
        headers={"User-Agent": "pipeline-delivery"},
        limits=limits,
        trust_env=section.proxy_from_environment,
    )


class ChannelSenders:
    """The adapter of each channel, the clients they share, and the sends in progress.

    ``senders`` (channel -> adapter) replaces the built-in adapters; without it they are
    made on first use and their HTTP clients released by :meth:`close`. ``publisher``
    gives the runtime's publisher, through which web replies without a callback URL go.
    """

    def __init__(
        self,
        settings: Settings,
        metrics: DeliveryMetrics,
        publisher: Callable[[], Publisher | None],
        senders: Mapping[str, Sender] | None = None,
    ) -> None:
        self.settings = settings
        self.section = settings.delivery
        self.metrics = metrics
        self._publisher = publisher
        self._custom = dict(senders) if senders is not None else None
        self._senders: dict[str, Sender] | None = self._custom
        self._client: httpx.AsyncClient | None = None
        self._callback_client: httpx.AsyncClient | None = None
        # Sends in progress per channel. Beyond the limit a handler waits here, on a cheap
        # asyncio semaphore, rather than in the HTTP pool, whose queue costs work per
        # waiting request each time a connection frees up.
        self._sending: dict[str, asyncio.Semaphore] = {}

    def all(self) -> Mapping[str, Sender]:
        """Every channel's adapter (the built-in ones made, with their clients, if need be)."""
        if self._senders is None:
            self._client = http_client(self.section)
            # Web callbacks go to URLs that come from clients: through the client that
            # enforces the egress policy, never the shared pool.
            self._callback_client = callback_client(self.section)
            self._senders = default_senders(
                self.settings, self._client, self._callback_client, self._publisher
            )
        return self._senders

    def get(self, channel: str) -> Sender | None:
        """The adapter of ``channel``, or None when there is none."""
        return self.all().get(channel)

    async def send(
        self,
        channel: str,
        sender: Sender,
        response: Event,
        attempt: int,
        record_attempt: Callable[[], Awaitable[None]],
    ) -> Outcome:
        """Attempt ``attempt`` of ``response``, within the channel's bound on sends in
        progress: ``record_attempt`` (acknowledged) once its turn has come, then the send.
        Only the sends in progress at a crash are uncertain, not those waiting their turn."""
        sending = self._sending.get(channel)
        if sending is None:
            sending = self._sending[channel] = asyncio.Semaphore(
                self.section.concurrent_sends(channel)
            )
        attributes: dict[str, str | int] = {
            "pipeline.channel": channel,
            "pipeline.attempt": attempt,
        }
        async with sending:
            await record_attempt()
            started = time.perf_counter()
            with span(f"deliver {channel}", attributes, kind=SpanKind.CLIENT) as sending_span:
                outcome = bounded(await sender.send(response))
                if outcome.http_status is not None:
                    sending_span.set_attribute("http.response.status_code", outcome.http_status)
                if not isinstance(outcome, Sent):
                    failed(sending_span, outcome.error)
        self.metrics.observe_send(channel, time.perf_counter() - started)
        return outcome

    async def close(self) -> None:
        """Release the built-in adapters' HTTP clients, if they were made; the adapters are
        made again on the next send."""
        if self._client is None:
            return
        client, self._client = self._client, None
        callbacks, self._callback_client = self._callback_client, None
        self._senders = self._custom
        await client.aclose()
        if callbacks is not None:
            await callbacks.aclose()
