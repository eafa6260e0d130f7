"""The delivery handler without a broker: attempts, statuses, store, metrics."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from pipeline.channels.outbound import Outcome, PermanentFailure, Retryable, Sent
from pipeline.config import Settings, bundled_dir
from pipeline.errors import BrokerUnavailableError, RejectEvent
from pipeline.events.catalog import SchemaCatalog
from pipeline.events.model import Event, Metadata
from pipeline.events.serde import SingleObjectSerde
from pipeline.runtime.context import Context
from pipeline.services.delivery import build
from pipeline.services.delivery.sent_store import decode_value
from pipeline.services.delivery.service import Delivery

SERDE = SingleObjectSerde(SchemaCatalog.load(bundled_dir("schemas")))


class Script:
    """A sender answering from a list of outcomes."""

    def __init__(self, *outcomes: Outcome) -> None:
        self.outcomes = list(outcomes)
        self.sent: list[Event] = []

    async def send(self, response: Event) -> Outcome:
        self.sent.append(response)
        return self.outcomes[min(len(self.sent), len(self.outcomes)) - 1]


class Recorder:
    """Stands in for the runtime's publisher: events and records it acknowledged."""

    def __init__(self) -> None:
        self.published: list[tuple[str, dict[str, Any], uuid.UUID]] = []
        self.records: list[tuple[str, str | bytes, bytes | None]] = []
        self.refuse = False

    async def publish(self, event_type: str, data: Mapping[str, Any], **kw: Any) -> None:
        SERDE.validate(event_type, {"metadata": kw["cause"].metadata.to_record(), **data})
        self.published.append((event_type, dict(data), kw["event_id"]))

    async def publish_record(self, topic: str, key: str | bytes, value: bytes | None) -> None:
        if self.refuse:
            raise BrokerUnavailableError("Kafka did not acknowledge a record (test)")
        self.records.append((topic, key, value))

    def states(self) -> list[tuple[str, int]]:
        """(state, attempt) of the newest entry of each record, in order."""
        return [(e.state, e.attempt) for *_, v in self.records for e in decode_value(v or b"")[-1:]]


def delivery(senders: Mapping[str, Any], *, publisher: bool = True, **section: Any) -> Delivery:
    """The service's handler owner, with a Recorder as its publisher (without one, as
    outside a runtime, everything goes out with the handler's outputs)."""
    values = {"backoff_initial_seconds": 0.01, "backoff_max_seconds": 0.02, **section}
    settings = Settings(metrics_port=0, delivery=values)
    service = build(settings, senders=senders)
    [spec] = service.handlers
    assert spec.name == "on_response_ready" and spec.event_type == "response_ready"
    bound: Any = spec.fn
    owner: Delivery = bound.__self__
    if publisher:
        owner.publisher = Recorder()  # type: ignore[assignment]
    return owner


def recorder(d: Delivery) -> Recorder:
    assert isinstance(d.publisher, Recorder)
    return d.publisher


def response(channel: str = "web", ingress_at: datetime | None = None) -> Event:
    metadata = Metadata.new("response_ready", "conv-1", tenant_id="t1", producer="agent")
    return Event(
        metadata,
        {
            "reply_to": {"channel": channel, "address": "http://127.0.0.1/cb", "thread_id": None},
            "text": "hi",
            "in_reply_to": None,
            "proactive": False,
            "ingress_at": ingress_at,
        },
    )


def context(event: Event, partition: int = 2) -> Context:
    return Context(
        event,
        service="delivery",
        attempt=1,
        serde=SERDE,
        topic_for=lambda name: f"p.{name}",
        traceparent=None,
        logger=logging.getLogger("test"),
        topic="p.response_ready",
        partition=partition,
    )


def statuses(ctx: Context) -> list[dict[str, Any]]:
    return [dict(o.event.data) for o in ctx.outgoing if o.event is not None]


def answers(ctx: Context) -> list[tuple[str, int]]:
    """(state, attempt) of the newest entry of each sent-store record in the outputs."""
    return [
        (e.state, e.attempt)
        for o in ctx.outgoing
        if o.event_type == "delivery_sent"
        for e in decode_value(o.value or b"")[-1:]
    ]


def sample(d: Delivery, name: str, **labels: str) -> float | None:
    value = d.registry.get_sample_value(name, {"service": "delivery", **labels})
    return value


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
    # The attempt was written (and acknowledged) before the send, not queued; the answer
    # goes out with the outputs, beside the status, so the offset commits after both.
    records = recorder(d).records
    assert [(topic, key) for topic, key, _ in records] == [("delivery_sent", "conv-1")]
    assert recorder(d).states() == [("attempted", 1)]
    status_record, answer = ctx.outgoing
    assert (answer.event_type, answer.topic, answer.key) == (
        "delivery_sent",
        "p.delivery_sent",
        "conv-1",
    )
    assert status_record.event is not None and status_record.event.type == "delivery_status"
    assert answer.value is not None
    [stored_entry] = decode_value(answer.value)
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
