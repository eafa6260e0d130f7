"""Web replies without a callback URL: written to ``web_outgoing`` for the browsers.

Sending is producing the reply to the stream topic; once Kafka acknowledged it, every
gateway replica reads it and pushes it to the conversation's open streams, so that
acknowledgment is "the gateway accepted it for the stream" and the response is marked
sent. The record's event id derives from the response id (the idempotency key), and an
interrupted attempt is looked up in the topic before anything is written again
(:class:`~pipeline.channels.outbound.Lookup`), so a delivery crash does not stream a
reply twice. :class:`WebReplies` is the web channel's adapter: the callback POST when the
message named a URL, the stream otherwise.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from pipeline.channels.outbound import Outcome, PermanentFailure, Retryable, Sent
from pipeline.channels.web.inbound import STREAM_ADDRESS
from pipeline.channels.web.outbound import WebSender
from pipeline.channels.web.stream_log import STREAM_EVENT, find_event, stream_event_id
from pipeline.config import Settings
from pipeline.errors import BrokerUnavailableError, EventValidationError, PipelineError
from pipeline.events.model import Event
from pipeline.runtime.publisher import Publisher

LOOKUP_MARGIN_MS = 5_000
"""Look this far before the attempt's recorded time: the broker's clock may lag ours."""


def streamed(response: Event) -> bool:
    """True for a web response that has no callback URL: it goes to the stream."""
    return str(response["reply_to"]["address"]) == STREAM_ADDRESS


class StreamSender:
    """Writes a response to ``web_outgoing`` through the service's publisher."""

    def __init__(
        self, settings: Settings, publisher: Callable[[], Publisher | None], timeout: float
    ) -> None:
        self.settings = settings
        self.publisher = publisher
        self.timeout = timeout

    async def send(self, response: Event) -> Outcome:
        publisher = self.publisher()
        if publisher is None:
            return Retryable("the delivery service's producer is not running yet")
        event_id = stream_event_id(response.id)
        data = {
            "response_id": str(response.id),
            "text": response["text"],
            "in_reply_to": response.get("in_reply_to"),
            "proactive": bool(response.get("proactive")),
            "stream_id": response.get("stream_id"),
        }
        try:
            await publisher.publish(
                STREAM_EVENT,
                data,
                conversation_id=response.conversation_id,
                tenant_id=response.metadata.tenant_id,
                cause=response,
                event_id=event_id,
                ack_timeout=self.timeout,
            )
        except EventValidationError as exc:
            return PermanentFailure(f"the reply does not fit the stream's schema: {exc}")
        except BrokerUnavailableError as exc:
            # Kafka may have stored it without our hearing back: look before writing again.
            return Retryable(f"stream not acknowledged: {exc}", uncertain=True)
        return Sent(str(event_id))

    async def find_sent(
        self, response: Event, since_ms: int
    ) -> Sent | Retryable | PermanentFailure | None:
        """Sent when the topic holds the response's record from ``since_ms`` on."""
        event_id = stream_event_id(response.id)
        try:
            found = await asyncio.to_thread(
                find_event,
                self.settings.consumer_config(),
                self.settings.topic(STREAM_EVENT),
                response.conversation_id,
                event_id,
                since_ms - LOOKUP_MARGIN_MS,
                self.timeout,
            )
        except PipelineError as exc:
            return Retryable(f"could not read the stream topic: {exc}")
        return None if found is None else Sent(str(event_id))


class WebReplies:
    """The web channel's adapter: the callback POST, or the stream without a URL."""

    def __init__(self, callbacks: WebSender, stream: StreamSender) -> None:
        self.callbacks = callbacks
        self.stream = stream

    async def send(self, response: Event) -> Outcome:
        if streamed(response):
            return await self.stream.send(response)
        return await self.callbacks.send(response)

    async def find_sent(
        self, response: Event, since_ms: int
    ) -> Sent | Retryable | PermanentFailure | None:
        """The stream can be looked up; a callback cannot (None: it is sent again, with
        the same Idempotency-Key, and the receiver drops the repeat)."""
        if streamed(response):
            return await self.stream.find_sent(response, since_ms)
        return None
