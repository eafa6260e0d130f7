"""The delivery handler's owner built for a test, a scripted sender, and what to read back."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from pipeline.channels.outbound import Outcome
from pipeline.config import Settings, bundled_dir
from pipeline.errors import BrokerUnavailableError
from pipeline.events.catalog import SchemaCatalog
from pipeline.events.model import Event, Metadata
from pipeline.events.serde import SingleObjectSerde
from pipeline.journal.steps import encode_steps
from pipeline.runtime.context import Context
from pipeline.runtime.running import Running
from pipeline.services.delivery import build
from pipeline.services.delivery.sent_store import SentEntry, decode_value, step_of
from pipeline.services.delivery.service import Delivery
from pipeline.state.changelog import Restored

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
    """The service's handler owner, with a Recorder as the runtime's publisher and its
    durable one (without, as outside a runtime, everything goes out with the handler's
    outputs), and its journal's partitions restored, empty."""
    values = {"backoff_initial_seconds": 0.01, "backoff_max_seconds": 0.02, **section}
    settings = Settings(metrics_port=0, delivery=values)
    service = build(settings, senders=senders)
    [spec] = service.handlers
    assert spec.name == "on_response_ready" and spec.event_type == "response_ready"
    bound: Any = spec.fn
    owner: Delivery = bound.__self__
    if publisher:
        recording: Any = Recorder()
        owner.publisher = recording
        service.running = Running({}, recording)
    store = owner.sent.journal.store
    for partition in PARTITIONS:  # as its (asynchronous) restore would leave them
        store._owned[partition] = {"p.response_ready"}
        store._apply(partition, Restored(partition, 0, 0, True))
    return owner


PARTITIONS = range(4)


def restored(
    d: Delivery, entry: SentEntry, partition: int = 2, conversation: str = "conv-1"
) -> None:
    """As if the journal had been restored with ``entry`` as the conversation's send."""
    step = step_of(entry, ("p.response_ready", partition, 0))
    d.sent.journal.store._partitions[partition].values[conversation] = encode_steps([step])


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
