"""Services the runtime tests run, in-process or as ``pipeline run service_apps:NAME``."""

from __future__ import annotations

import asyncio
import os
import random
import threading
from pathlib import Path
from typing import Any

from confluent_kafka import TopicPartition

from pipeline.config import Settings
from pipeline.events.model import Event
from pipeline.runtime.context import Context
from pipeline.runtime.kafka_transport import KafkaTransport
from pipeline.runtime.producer import AsyncProducer
from pipeline.runtime.service import Service


def relay(settings: Settings, *, max_sleep: float | None = None, name: str = "relay") -> Service:
    """message_received -> response_ready carrying the same text, after a random sleep.

    In a subprocess the sleep comes from RELAY_MAX_SLEEP_SECONDS.
    """
    if max_sleep is None:
        max_sleep = float(os.environ.get("RELAY_MAX_SLEEP_SECONDS", "0"))
    service = Service(name, settings=settings)

    @service.handler("message_received")
    async def respond(event: Event, ctx: Context) -> None:
        if max_sleep:
            await asyncio.sleep(random.uniform(0, max_sleep))
        ctx.emit(
            "response_ready",
            {"reply_to": event["reply_to"], "text": event["text"], "proactive": False},
        )

    return service


def build_relay(settings: Settings) -> Service:
    """Entry point for ``pipeline run service_apps:build_relay``."""
    return relay(settings)


class StallingProducer(AsyncProducer):
    """The real transactional producer, except that ``send_offsets_to_transaction`` never
    returns while the file ``$STALL_FILE`` exists (it touches ``$STALL_FILE.stalled``
    first): the call librdkafka can leave blocked while a group coordinator is down."""

    def send_offsets_to_transaction(
        self, offsets: list[TopicPartition], group_metadata: Any, timeout: float
    ) -> None:
        trigger = Path(os.environ["STALL_FILE"])
        if trigger.exists():
            trigger.with_suffix(".stalled").touch()
            threading.Event().wait()
        super().send_offsets_to_transaction(offsets, group_metadata, timeout)


class StallingTransport(KafkaTransport):
    """confluent-kafka's clients, the transactional producer a :class:`StallingProducer`."""

    def transactional_producer(
        self, config: dict[str, Any], loop: asyncio.AbstractEventLoop
    ) -> AsyncProducer:
        return StallingProducer(config, loop)


def build_stalling_relay(settings: Settings) -> Service:
    """``pipeline run service_apps:build_stalling_relay``: the relay on a transport whose
    transaction calls can be made to never return."""
    service = relay(settings)
    service.transport = StallingTransport()
    return service
