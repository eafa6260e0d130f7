"""The delivery handler without a broker: attempts, statuses, store, metrics."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from pipeline.channels.outbound import Outcome, PermanentFailure, Retryable, Sent
from pipeline.errors import RejectEvent
from pipeline.events.model import Event
from pipeline.services.delivery.sent_store import decode_value
from pipeline.services.delivery.service import Delivery
from tests.unit.services.delivery.delivery_support import (
    Script,
    context,
    delivery,
    recorder,
    response,
    sample,
    statuses,
)


async def test_sent_at_once_reports_sent_and_records_the_response() -> None:
    sender = Script(Sent("m-1", 200))
    d = delivery({"web": sender})
    event = response(ingress_at=datetime.now(UTC) - timedelta(seconds=2))
    ctx = context(event)
    await d.on_response_ready(event, ctx)
    [status] = statuses(ctx)
    assert status["state"] == "sent"
    assert status["attempt"] == 1
    assert status["provider_message_id"] == "m-1"
    assert status["http_status"] == 200
    assert status["response_id"] == str(event.id)
    # The attempt was written (and acknowledged) before the send and the answer as soon as
    # it came, both at once, not queued with the outputs; only the status is.
    records = recorder(d).records
    assert [(topic, key) for topic, key, _ in records] == [("delivery_sent", "conv-1")] * 2
    assert recorder(d).states() == [("attempted", 1), ("sent", 1)]
    [status_record] = ctx.outgoing
    assert status_record.event is not None and status_record.event.type == "delivery_status"
    answer = records[-1][2]
    assert answer is not None
    [stored_entry] = decode_value(answer)
    assert (stored_entry.response_id, stored_entry.state) == (str(event.id), "sent")
    stored = d.store.get(2, "conv-1", str(event.id))
    assert stored is not None and stored.state == "sent"
    assert sample(d, "pipeline_deliveries_total", channel="web", state="sent") == 1
    assert sample(d, "pipeline_delivery_duration_seconds_count", channel="web") == 1
    assert sample(d, "pipeline_turn_latency_seconds_count", channel="web") == 1
    turn = sample(d, "pipeline_turn_latency_seconds_sum", channel="web")
    assert turn is not None and 2 <= turn < 10


async def test_retryable_twice_then_sent_reports_each_attempt_in_order() -> None:
    sender = Script(
        Retryable("HTTP 500: boom", 500), Retryable("HTTP 503: busy", 503, 0.05), Sent("m-2")
    )
    d = delivery({"web": sender}, publisher=False)
    event = response()
    ctx = context(event)
    await d.on_response_ready(event, ctx)
    assert len(sender.sent) == 3
    states = [(s["state"], s["attempt"], s["http_status"]) for s in statuses(ctx)]
    assert states == [("retrying", 1, 500), ("retrying", 2, 503), ("sent", 3, None)]
    retrying = statuses(ctx)[1]
    assert retrying["error"] == "HTTP 503: busy"
    assert retrying["next_attempt_at"] is not None


async def test_permanent_failure_reports_failed_and_rejects_the_event() -> None:
    sender = Script(PermanentFailure("HTTP 400: bad", 400))
    d = delivery({"web": sender})
    event = response()
    ctx = context(event)
    with pytest.raises(RejectEvent) as raised:
        await d.on_response_ready(event, ctx)
    assert raised.value.stage == "delivery"
    assert len(sender.sent) == 1
    [status] = statuses(ctx)
    assert (status["state"], status["attempt"], status["http_status"]) == ("failed", 1, 400)
    assert status["error"] == "HTTP 400: bad"
    assert len(ctx.outgoing) == 1
    assert recorder(d).states() == [("attempted", 1), ("failed", 1)]


async def test_exhausted_retries_report_failed_with_the_last_error() -> None:
    sender = Script(Retryable("HTTP 502: bad gateway", 502))
    d = delivery({"web": sender}, publisher=False, max_attempts=3)
    event = response()
    ctx = context(event)
    with pytest.raises(RejectEvent, match="gave up after 3 attempts"):
        await d.on_response_ready(event, ctx)
    assert len(sender.sent) == 3
    assert [(s["state"], s["attempt"]) for s in statuses(ctx)] == [
        ("retrying", 1),
        ("retrying", 2),
        ("failed", 3),
    ]


async def test_already_sent_is_not_sent_again_and_repeats_the_same_status() -> None:
    sender = Script(Sent("m-4", 200))
    d = delivery({"web": sender})
    event = response()
    first = context(event)
    await d.on_response_ready(event, first)
    again = context(event)
    await d.on_response_ready(event, again)
    assert len(sender.sent) == 1
    [status] = statuses(again)
    assert (status["state"], status["provider_message_id"]) == ("sent", "m-4")
    assert len(again.outgoing) == 1, "no new store record"
    assert again.outgoing[0].event is not None and first.outgoing[0].event is not None
    assert again.outgoing[0].event.id == first.outgoing[0].event.id
    assert sample(d, "pipeline_deliveries_total", channel="web", state="duplicate") == 1


async def test_a_channel_without_adapter_fails() -> None:
    d = delivery({"web": Script(Sent())})
    event = response("sms")
    ctx = context(event)
    with pytest.raises(RejectEvent, match="no outbound adapter for channel 'sms'"):
        await d.on_response_ready(event, ctx)
    assert [s["state"] for s in statuses(ctx)] == ["failed"]
    assert sample(d, "pipeline_deliveries_total", channel="sms", state="failed") == 1


async def test_retries_count_each_attempt_and_no_turn_latency_without_ingress() -> None:
    d = delivery({"web": Script(Retryable("HTTP 500: x", 500), Sent())})
    event = response()
    await d.on_response_ready(event, context(event))
    assert sample(d, "pipeline_deliveries_total", channel="web", state="retrying") == 1
    assert sample(d, "pipeline_deliveries_total", channel="web", state="sent") == 1
    assert sample(d, "pipeline_delivery_duration_seconds_count", channel="web") == 2
    assert sample(d, "pipeline_turn_latency_seconds_count", channel="web") is None


async def test_a_partition_revoked_during_the_backoff_is_handed_back_unsent() -> None:
    d: Delivery

    class RevokedMeanwhile(Script):
        async def send(self, response: Event) -> Outcome:
            outcome = await super().send(response)
            await d.forget([("p.response_ready", 2)])
            return outcome

    sender = RevokedMeanwhile(Retryable("HTTP 503: busy", 503), Sent("never"))
    d = delivery({"web": sender}, publisher=False)
    d.owned = {1, 2}
    event = response()
    ctx = context(event, partition=2)
    await d.on_response_ready(event, ctx)
    assert len(sender.sent) == 1
    assert [s["state"] for s in statuses(ctx)] == ["retrying"]
    assert d.owned == {1}
    assert d.store.get(2, "conv-1", str(event.id)) is None
