"""The channels' adapters and the bound on sends in progress per channel."""

from __future__ import annotations

import asyncio
from typing import Any

from pipeline.channels.outbound import Outcome, Sent
from pipeline.config import Settings
from pipeline.events.model import Event
from pipeline.services.delivery import build
from pipeline.services.delivery.service import Delivery
from tests.unit.services.delivery.delivery_support import context, delivery, response, sample


class Gate:
    """A sender that holds every send until released, counting how many are inside."""

    def __init__(self) -> None:
        self.inside = 0
        self.peak = 0
        self.release = asyncio.Event()

    async def send(self, response: Event) -> Outcome:
        self.inside += 1
        self.peak = max(self.peak, self.inside)
        await self.release.wait()
        self.inside -= 1
        return Sent(None, 200)


async def test_sends_per_channel_are_limited_and_the_rest_wait_their_turn() -> None:
    web, slack = Gate(), Gate()
    d = delivery({"web": web, "slack": slack}, max_concurrent_sends=3)
    events = [response() for _ in range(8)] + [response("slack") for _ in range(2)]
    tasks = [asyncio.create_task(d.on_response_ready(e, context(e))) for e in events]
    for _ in range(50):  # let every handler run as far as it can
        await asyncio.sleep(0)
    assert (web.inside, slack.inside) == (3, 2)  # the limit is per channel
    web.release.set()
    slack.release.set()
    await asyncio.gather(*tasks)
    assert (web.peak, slack.peak) == (3, 2)
    assert sample(d, "pipeline_deliveries_total", channel="web", state="sent") == 8


async def test_the_built_in_adapters_are_made_again_after_the_last_partition_is_revoked() -> None:
    [spec] = build(Settings(metrics_port=0)).handlers
    bound: Any = spec.fn
    d: Delivery = bound.__self__
    d.owned = {1, 2}
    web = d.senders.get("web")
    assert web is not None and d.senders.get("web") is web, "made once, then kept"
    assert d.senders.get("sms") is None
    await d.forget([("p.response_ready", 1)])
    assert d.senders.get("web") is web, "kept while a partition is owned"
    await d.forget([("p.response_ready", 2)])
    assert d.senders.get("web") is not web, "their HTTP clients were released"
