"""The delivery_status events: a retrying one at once, the others with the outputs."""

from __future__ import annotations

import uuid
from typing import Any

from pipeline.channels.outbound import Retryable, Sent
from pipeline.errors import BrokerUnavailableError
from pipeline.services.delivery.statuses import Statuses, status_data
from tests.unit.services.delivery.delivery_support import (
    Script,
    context,
    delivery,
    recorder,
    response,
    statuses,
)


async def test_retrying_statuses_are_published_at_once_with_ids_from_the_attempt() -> None:
    sender = Script(Retryable("timeout: ReadTimeout"), Sent("m-3"))
    d = delivery({"web": sender})
    event = response()
    ctx = context(event)
    await d.on_response_ready(event, ctx)
    [(event_type, data, event_id)] = recorder(d).published
    assert event_type == "delivery_status"
    assert (data["state"], data["attempt"], data["error"]) == (
        "retrying",
        1,
        "timeout: ReadTimeout",
    )
    assert event_id == uuid.uuid5(event.id, "delivery/retrying/1")
    assert [s["state"] for s in statuses(ctx)] == ["sent"]


class Unreachable:
    """A publisher whose every publish fails as Kafka being away would."""

    async def publish(self, event_type: str, data: Any, **kw: Any) -> None:
        raise BrokerUnavailableError("Kafka did not acknowledge the event (test)")


async def test_a_retrying_status_that_cannot_be_published_goes_out_with_the_outputs() -> None:
    event = response()
    ctx = context(event)
    data = status_data(event, "retrying", 1, error="HTTP 503: busy")
    unreachable: Any = Unreachable()
    await Statuses("delivery", lambda: unreachable).publish_now(ctx, event, data, 1)
    assert [(s["state"], s["attempt"], s["error"]) for s in statuses(ctx)] == [
        ("retrying", 1, "HTTP 503: busy")
    ]
