"""Publishing outside handlers: an event encoded once is not encoded again."""

from __future__ import annotations

import asyncio
from typing import Any

from pipeline.config import Settings, bundled_dir
from pipeline.events.catalog import SchemaCatalog
from pipeline.events.model import Event
from pipeline.events.serde import SingleObjectSerde
from pipeline.runtime.publisher import Publisher


class CountingSerde(SingleObjectSerde):
    def __init__(self) -> None:
        super().__init__(SchemaCatalog.load(bundled_dir("schemas")))
        self.encoded = 0

    def encode(self, event: Event) -> bytes:
        self.encoded += 1
        return super().encode(event)


class Acknowledging:
    def __init__(self) -> None:
        self.values: list[bytes] = []

    async def send(self, topic: str, value: bytes, key: Any, headers: Any = ()) -> Any:
        self.values.append(value)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        future.set_result(None)
        return future


async def test_an_event_encoded_already_is_produced_as_it_was_encoded() -> None:
    serde, producer = CountingSerde(), Acknowledging()
    publisher = Publisher(Settings(), producer, serde, "gateway")  # type: ignore[arg-type]
    data = {"channel": "web", "sender_id": "u", "text": "hi"}
    reply_to = {"channel": "web", "address": "https://example.com/cb", "thread_id": None}
    event = publisher.build(
        "message_received", {**data, "reply_to": reply_to}, conversation_id="c", tenant_id="t"
    )
    value = serde.encode(event)
    await publisher.publish_event(event, encoded=value)
    assert serde.encoded == 1
    assert producer.values == [value]
    await publisher.publish_event(event)  # without it: encoded here
    assert serde.encoded == 2
    assert serde.decode(producer.values[1]).id == event.id
