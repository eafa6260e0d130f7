"""One conversation's whole story across topics: what came in, what each service did,
what went out. Reads only the conversation's partition of each topic (murmur2).

The previews of answers being written (``response_delta``, tens per answer) are left out:
each answer's ``response_ready`` says what was written.

Each line's "what" is the fields a reader wants first for the bundled event types; for an
event type of your own, the field its schema marks with ``"summary": true``, or else its
first string field.

It is also the audit trail of what operators did: every operator action is an event
carrying the operator's id (taking over, replies, releases, approval decisions,
decisions on uncertain tool calls), and a record an operator redrove from the dead
letters carries who did it in its headers; :attr:`Entry.operator` names that operator
and the summary says it.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, TopicPartition

from pipeline.config import Settings
from pipeline.deadletters.entry import REDRIVEN_BY
from pipeline.errors import PipelineError
from pipeline.events.jsonable import jsonable
from pipeline.events.model import Event
from pipeline.events.serde import SingleObjectSerde
from pipeline.observability.kafka_logs import cli_connection, wait_for_metadata
from pipeline.partitioner import partition_for
from pipeline.topology import load_settings_topology

LEFT_OUT = frozenset({"response_delta"})


@dataclass(frozen=True, slots=True)
class Entry:
    topic: str
    partition: int
    offset: int
    event: Event
    summary_field: str | None = None
    """For an event type of your own: the field its "what" shows (:func:`summary_field`)."""
    redriven_by: str | None = None  # the operator who redrove this record, if one did

    @property
    def operator(self) -> str | None:
        """The operator who did this (an operator's action), or redrove it."""
        return self.event.data.get("operator_id") or self.redriven_by

    def summary(self) -> str:
        """The fields a reader wants first, per event type; who, for an operator's action."""
        data = self.event.data
        for field in ("text", "proactive_message", "state", "tool", "event_name"):
            if data.get(field):
                detail = str(data[field])
                break
        else:
            detail = ""
        operator = data.get("operator_id")
        if self.event.type in ("operator_message", "handoff_released") and operator:
            detail = f"by {operator}: {data.get('text') or data.get('note') or ''}"
        if self.event.type == "handoff_requested":
            by = f"by {operator}: " if operator else f"{data.get('requested_by')}: "
            detail = by + str(data.get("reason") or "")
        if self.event.type == "approval_decided":
            internal, note = data.get("internal_reason"), data.get("note")
            detail = f"{data.get('decision')} by {operator}: {internal or note or ''}"
            if internal and note:
                detail += f" (the customer was told: {note})"
        if self.event.type == "tool_result":
            detail = f"{data.get('tool')} {data.get('status')}: {data.get('result_json') or ''}"
            detail += data.get("error") or ""
        if self.event.type == "tool_outcome_decided":
            detail = (
                f"{data.get('tool')} {data.get('outcome')} by {data.get('operator_id')}: "
                f"{data.get('note') or ''}"
            )
        if self.event.type == "history_summarized":
            detail = (
                f"{data.get('folded_messages')} messages ({data.get('folded_tokens')} tokens) "
                f"folded into the summary: {data.get('summary') or ''}"
            )
        if self.event.type == "operator_action_handled":
            detail = f"{data.get('action')} by {operator} {data.get('outcome')}"
            detail += f": {data['reason']}" if data.get("reason") else ""
        if self.event.type == "timer_requested":
            detail = f"{data.get('action')} {data.get('timer_id')} due {data.get('due_at')}"
        if not detail and self.summary_field is not None:
            detail = str(data.get(self.summary_field) or "")
        if self.redriven_by:
            detail = f"(redriven by {self.redriven_by}) {detail}"
        return " ".join(detail.split())[:120]

    def producer(self) -> str:
        """Who wrote the event: its producer, with the agent's version label when the
        event carries one (``agent@1.4.0``)."""
        version = self.event.agent_version
        producer = self.event.metadata.producer
        return f"{producer}@{version}" if version else producer

    def line(self) -> str:
        meta = self.event.metadata
        cause = str(meta.causation_id)[:8] if meta.causation_id else "-"
        when = meta.occurred_at.strftime("%H:%M:%S.%f")[:-3]
        return (
            f"{when}  {meta.event_type:<17} {str(meta.event_id)[:8]} <- {cause:<8} "
            f"{self.producer():<10} {self.summary()}"
        )

    def as_json(self) -> dict[str, Any]:
        return {
            "topic": self.topic,
            "partition": self.partition,
            "offset": self.offset,
            "operator": self.operator,
            "event": jsonable(self.event.to_dict()),
        }


BUNDLED_NAMESPACE = "pipeline.events."


def summary_field(schema: Mapping[str, Any]) -> str | None:
    """The field the timeline shows of an event type of your own (a parsed record schema):
    the one marked ``"summary": true``, else the first of type string; None for a bundled
    type (they have their own) or one without a string field."""
    if str(schema.get("name", "")).startswith(BUNDLED_NAMESPACE):
        return None
    fields = [f for f in schema.get("fields", []) if f.get("name") != "metadata"]
    for field in fields:
        if field.get("summary") is True:
            return str(field["name"])
    for field in fields:
        kind = field.get("type")
        if kind == "string" or (isinstance(kind, list) and "string" in kind):
            return str(field["name"])
    return None


def conversation_timeline(
    settings: Settings, serde: SingleObjectSerde, conversation_id: str, timeout: float = 10.0
) -> list[Entry]:
    """Every event of the conversation in the conversation topics, by occurred-at."""
    topology = load_settings_topology(settings)
    topics = [t for t in topology if t.kind == "conversation" and t.name not in LEFT_OUT]
    connection = cli_connection(settings.bootstrap_servers)
    consumer = Consumer(
        {
            **settings.consumer_config(),
            **connection.client_config(),
            "group.id": f"pipeline-timeline-{uuid.uuid4()}",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
        }
    )
    entries: list[Entry] = []
    fields: dict[str, str | None] = {}
    try:
        ends: dict[tuple[str, int], int] = {}
        starts = []
        wait_for_metadata(consumer, connection, timeout)  # an unreachable cluster: one error
        for topic in topics:
            physical = settings.topic(topic.name)
            meta = consumer.list_topics(physical, timeout=timeout).topics.get(physical)
            if meta is None or meta.error is not None or not meta.partitions:
                continue
            partition = partition_for(conversation_id, len(meta.partitions))
            low, high = consumer.get_watermark_offsets(
                TopicPartition(physical, partition), timeout=timeout
            )
            if high > low:
                ends[(physical, partition)] = high
                starts.append(TopicPartition(physical, partition, low))
        consumer.assign(starts)
        deadline = time.monotonic() + timeout
        # poll, not consume: consume waits for a full batch or the whole timeout.
        while ends and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None or msg.error() is not None:
                continue
            where = (msg.topic() or "", msg.partition() or 0)
            offset = msg.offset() or 0
            if offset + 1 >= ends.get(where, 0):
                ends.pop(where, None)
            key = msg.key()
            if (key.decode() if isinstance(key, bytes) else key) != conversation_id:
                continue
            try:
                event = serde.decode(msg.value() or b"")
            except PipelineError:
                continue
            if event.type not in fields:
                fields[event.type] = summary_field(serde.catalog.reader(event.type).parsed)
            entries.append(
                Entry(
                    where[0],
                    where[1],
                    offset,
                    event,
                    fields[event.type],
                    _redriven_by(msg.headers()),
                )
            )
    finally:
        consumer.close()
    return sorted(entries, key=lambda e: (e.event.metadata.occurred_at, e.topic, e.offset))


def _redriven_by(headers: Any) -> str | None:
    pairs = headers.items() if isinstance(headers, dict) else headers or ()
    for key, value in pairs:
        if key == REDRIVEN_BY and value:
            return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
    return None


def render(entries: list[Entry], as_json: bool = False) -> str:
    if as_json:
        return "\n".join(json.dumps(e.as_json()) for e in entries)
    return "\n".join(e.line() for e in entries)
