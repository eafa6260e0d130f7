"""One conversation's whole story across topics: what came in, what each service did,
what went out. Reads only the conversation's partition of each topic (murmur2).

The previews of answers being written (``response_delta``, tens per answer) are left out:
each answer's ``response_ready`` says what was written."""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, TopicPartition

from pipeline.config import Settings
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

    def summary(self) -> str:
        """The fields a reader wants first, per event type."""
        data = self.event.data
        for field in ("text", "proactive_message", "state", "tool", "event_name"):
            if data.get(field):
                detail = str(data[field])
                break
        else:
            detail = ""
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
        if self.event.type == "timer_requested":
            detail = f"{data.get('action')} {data.get('timer_id')} due {data.get('due_at')}"
        return " ".join(detail.split())[:120]

    def line(self) -> str:
        meta = self.event.metadata
        cause = str(meta.causation_id)[:8] if meta.causation_id else "-"
        when = meta.occurred_at.strftime("%H:%M:%S.%f")[:-3]
        return (
            f"{when}  {meta.event_type:<17} {str(meta.event_id)[:8]} <- {cause:<8} "
            f"{meta.producer:<10} {self.summary()}"
        )

    def as_json(self) -> dict[str, Any]:
        return {
            "topic": self.topic,
            "partition": self.partition,
            "offset": self.offset,
            "event": jsonable(self.event.to_dict()),
        }


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
            entries.append(Entry(where[0], where[1], offset, event))
    finally:
        consumer.close()
    return sorted(entries, key=lambda e: (e.event.metadata.occurred_at, e.topic, e.offset))


def render(entries: list[Entry], as_json: bool = False) -> str:
    if as_json:
        return "\n".join(json.dumps(e.as_json()) for e in entries)
    return "\n".join(e.line() for e in entries)
