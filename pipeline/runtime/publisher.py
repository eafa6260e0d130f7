"""Publishing outside handlers: HTTP endpoints, timers, the CLI.

``publish`` returns once the broker acknowledged the event, so a caller can promise the
event is stored (the gateway answers 202 only then) or report that it is not.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Mapping
from typing import Any

from confluent_kafka import KafkaException

from pipeline.config import Settings
from pipeline.errors import BrokerUnavailableError
from pipeline.events.model import Event, Metadata
from pipeline.events.serde import SingleObjectSerde
from pipeline.events.wire import make_serde
from pipeline.observability.otel import OBSERVE
from pipeline.observability.tracing import child_traceparent
from pipeline.runtime.headers import Header, event_headers
from pipeline.runtime.ports import ProducerPort, Record
from pipeline.runtime.producer import AsyncProducer, producer_config
from pipeline.runtime.spans import landed, publish_span, traceparent_of


class Publisher:
    """Produce events and records and wait for the broker's acknowledgement."""

    def __init__(
        self,
        settings: Settings,
        producer: ProducerPort,
        serde: SingleObjectSerde,
        name: str,
        *,
        owns_producer: bool = False,
    ) -> None:
        self.settings = settings
        self.serde = serde
        self.name = name
        self._producer = producer
        self._owns_producer = owns_producer

    @classmethod
    def create(
        cls, settings: Settings, name: str, client_config: Mapping[str, Any] | None = None
    ) -> Publisher:
        """A publisher with its own producer (``client_config`` added to its configuration:
        callbacks); call from a running event loop."""
        producer = AsyncProducer(
            {**producer_config(settings, f"{name}-publisher"), **(client_config or {})},
            asyncio.get_running_loop(),
        )
        serde = make_serde(settings)
        return cls(settings, producer, serde, name, owns_producer=True)

    def build(
        self,
        event_type: str,
        data: Mapping[str, Any],
        *,
        conversation_id: str,
        tenant_id: str,
        cause: Event | None = None,
        event_id: uuid.UUID | None = None,
    ) -> Event:
        """An event with fresh metadata (chained to ``cause`` when given)."""
        if cause is not None:
            metadata = cause.metadata.caused(
                event_type, producer=self.name, event_id=event_id, conversation_id=conversation_id
            )
        else:
            metadata = Metadata.new(
                event_type, conversation_id, tenant_id=tenant_id, producer=self.name
            )
            if event_id is not None:
                metadata = Metadata(
                    event_id,
                    event_type,
                    conversation_id,
                    tenant_id,
                    event_id,
                    None,
                    metadata.occurred_at,
                    self.name,
                )
        return Event(metadata, dict(data))

    async def publish(
        self,
        event_type: str,
        data: Mapping[str, Any],
        *,
        conversation_id: str,
        tenant_id: str,
        cause: Event | None = None,
        event_id: uuid.UUID | None = None,
        traceparent: str | bytes | None = None,
        ack_timeout: float = 10.0,
    ) -> Event:
        """Validate, encode and produce one event; returns it once acknowledged.

        Raises EventValidationError (nothing produced) or BrokerUnavailableError.
        """
        event = self.build(
            event_type,
            data,
            conversation_id=conversation_id,
            tenant_id=tenant_id,
            cause=cause,
            event_id=event_id,
        )
        await self.publish_event(event, traceparent=traceparent, ack_timeout=ack_timeout)
        return event

    async def publish_event(
        self,
        event: Event,
        *,
        traceparent: str | bytes | None = None,
        ack_timeout: float = 10.0,
        encoded: bytes | None = None,
    ) -> None:
        """Encode and produce ``event``; its ``traceparent`` is a child of ``traceparent``
        (with tracing on: the span of this send, a child of the current span if any).

        ``encoded``: the event's value as this publisher's serde encoded it already (a
        caller that encoded it to check it fits its schema), so it is not encoded again."""
        value = self.serde.encode(event) if encoded is None else encoded
        if OBSERVE.tracing:
            topic = self.settings.topic(event.type)
            with publish_span(topic, event, self.name, traceparent) as sent:
                record = await self._publish_encoded(
                    event, value, traceparent_of(sent), ack_timeout
                )
                landed(sent, record)
            return
        await self._publish_encoded(event, value, child_traceparent(traceparent), ack_timeout)

    async def _publish_encoded(
        self, event: Event, value: bytes, traceparent: str, ack_timeout: float
    ) -> Record:
        headers = event_headers(
            event.type, event.metadata.event_id_text, traceparent, self.serde.content_type
        )
        return await self.publish_record(
            event.type, event.conversation_id, value, headers=headers, ack_timeout=ack_timeout
        )

    async def publish_record(
        self,
        topic: str,
        key: str | bytes,
        value: bytes | None,
        *,
        headers: tuple[Header, ...] = (),
        ack_timeout: float = 10.0,
    ) -> Record:
        """Produce a raw record to a logical ``topic`` and wait for its acknowledgement;
        the record as acknowledged (its partition and offset)."""
        physical = self.settings.topic(topic)
        ack = await self._producer.send(physical, value, key, headers)
        try:
            return await asyncio.wait_for(ack, ack_timeout)
        except TimeoutError as exc:
            raise BrokerUnavailableError(
                f"Kafka did not acknowledge a record for {physical} within {ack_timeout:g}s"
            ) from exc
        except KafkaException as exc:
            raise BrokerUnavailableError(f"Kafka refused a record for {physical}: {exc}") from exc

    async def close(self, flush_seconds: float = 10.0) -> None:
        if self._owns_producer:
            await self._producer.aclose(flush_seconds)
