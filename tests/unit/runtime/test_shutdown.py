"""Stopping a service: the clients its background tasks own close only after the handlers
that use them have finished, so a stop repeats no outside call."""

from __future__ import annotations

import asyncio

from pipeline.events.model import Event
from pipeline.runtime.context import Context
from pipeline.runtime.publisher import Publisher
from pipeline.runtime.service import Service
from pipeline.testing import TestService
from tests.unit.runtime_events import chat, reply


class Client:
    """A model's or a channel's client: closed by the service's background task."""

    def __init__(self) -> None:
        self.closed = False
        self.calls: list[str] = []

    async def call(self, text: str) -> str:
        await asyncio.sleep(0.2)  # a slow outside call, in flight when the stop comes
        if self.closed:
            raise RuntimeError("Cannot send a request, as the client has been closed")
        self.calls.append(text)
        return text


def service_with(client: Client, started: asyncio.Event) -> Service:
    service = Service("shutdown", emits=["response_ready"])

    @service.handler("message_received")
    async def handle(event: Event, ctx: Context) -> None:
        started.set()
        answer = await client.call(event["text"])
        ctx.emit("response_ready", reply(answer))

    @service.background
    async def owns_the_client(_: Publisher) -> None:
        try:
            await asyncio.Event().wait()
        finally:
            client.closed = True

    return service


async def test_a_stop_lets_in_flight_handlers_finish_before_their_client_closes() -> None:
    client, started = Client(), asyncio.Event()
    async with TestService(service_with(client, started), drain_timeout_seconds=5.0) as svc:
        await svc.send("message_received", chat("in flight"))
        await asyncio.wait_for(started.wait(), 5)
        # Leaving the block stops the service while the call is in flight.
    assert client.calls == ["in flight"]  # it finished on an open client
    assert client.closed
    assert [e["text"] for e in svc.outputs("response_ready")] == ["in flight"]
    assert [tp.offset for tp in svc.committed().values()] == [1]  # not handled again
