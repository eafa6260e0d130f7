"""The journal stays small: turns through the agent with its model calls journaled, then
how much of the journal topic is left, against what was written.

Runs the agent in this process on a broker (``--bootstrap``, or ``KAFKA_BOOTSTRAP_SERVERS``)
with topics of its own (a fresh prefix): every model call is journaled (the deterministic
provider with ``agent.journal_model_calls=always``, so no model is needed) and the sweep
runs every few seconds. The journal topic is created with small segments and a short
tombstone retention, so Kafka's log cleaner compacts it during the run. It prints the
journal records written (two per turn: intent and result, plus the sweep's tombstones),
the conversations the agent's journal still holds after the last sweep, and the records
left in the topic once compaction ran, read from its beginning. Stops by itself.

    python benchmarks/journal_size.py --turns 10000 --conversations 1000
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
import uuid
from pathlib import Path

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.config import Settings
from pipeline.events.model import Event, Metadata
from pipeline.events.wire import make_serde
from pipeline.services.agent import assemble
from pipeline.toolbox import builtin_tools
from pipeline.toolbox.tool_offer import StaticOffer

AGENT_TOPICS = (
    "message_received",
    "tool_called",
    "tool_result",
    "response_ready",
    "timer_requested",
    "timer_fired",
    "context_updated",
    "operator_message",
    "handoff_requested",
    "handoff_released",
    "approval_requested",
    "approval_decided",
    "agent_state_changelog",
    "response_delta",
    "history_summarized",
    "dead_letters",
    "tool_catalog",
)
JOURNAL = "agent_journal"
PARTITIONS = 6
QUIET = {"log_level": 2}


def create_topics(bootstrap: str, prefix: str) -> None:
    compacted = {
        "cleanup.policy": "compact",
        "segment.ms": "2000",
        "min.cleanable.dirty.ratio": "0.01",
        "min.compaction.lag.ms": "0",
        "delete.retention.ms": "1000",
    }
    topics = [NewTopic(prefix + name, PARTITIONS, 1) for name in AGENT_TOPICS]
    topics.append(NewTopic(prefix + JOURNAL, PARTITIONS, 1, config=compacted))
    admin = AdminClient({"bootstrap.servers": bootstrap, **QUIET})
    for future in admin.create_topics(topics, operation_timeout=30).values():
        future.result(timeout=60)


def message(conversation: str, n: int) -> Event:
    metadata = Metadata.new("message_received", conversation, tenant_id="t1", producer="bench")
    address = {"channel": "web", "address": "https://example.com/cb", "thread_id": None}
    body = {"channel": "web", "sender_id": "u", "text": f"hello {n}", "reply_to": address}
    return Event(metadata, {**body, "external_id": None})


def produce(bootstrap: str, topic: str, turns: int, conversations: int, rate: float) -> None:
    serde = make_serde(Settings())
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, **QUIET})
    started = time.monotonic()
    for n in range(turns):
        conversation = f"conv-{n % conversations:05d}"
        producer.produce(topic, serde.encode(message(conversation, n)), conversation)
        producer.poll(0)
        if n % 50 == 0:
            time.sleep(max(0.0, started + n / rate - time.monotonic()))
    producer.flush(60)


def count_records(bootstrap: str, topic: str) -> tuple[int, int, int]:
    """(records, tombstones, distinct keys) left in ``topic``, read from its beginning."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"count-{uuid.uuid4().hex[:6]}",
            "enable.partition.eof": True,
            **QUIET,
        }
    )
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(PARTITIONS)])
    records = tombstones = 0
    keys: set[bytes] = set()
    ended: set[int] = set()
    deadline = time.monotonic() + 60
    while len(ended) < PARTITIONS and time.monotonic() < deadline:
        for msg in consumer.consume(1000, 0.5):
            error = msg.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    ended.add(msg.partition() or 0)
                continue
            records += 1
            tombstones += msg.value() is None
            keys.add(msg.key() or b"")
    consumer.close()
    return records, tombstones, len(keys)


def responses(bootstrap: str, topic: str) -> int:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "count", **QUIET})
    total = 0
    for p in range(PARTITIONS):
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
        total += high - low
    consumer.close()
    return total


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bootstrap", default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS"))
    parser.add_argument("--turns", type=int, default=10_000)
    parser.add_argument("--conversations", type=int, default=1_000)
    parser.add_argument("--rate", type=float, default=200.0, help="turns per second")
    parser.add_argument("--sweep-seconds", type=float, default=5.0)
    args = parser.parse_args()
    if not args.bootstrap:
        parser.error("give --bootstrap or set KAFKA_BOOTSTRAP_SERVERS")
    prefix = f"journal-{uuid.uuid4().hex[:6]}."
    create_topics(args.bootstrap, prefix)
    settings = Settings(
        bootstrap_servers=args.bootstrap,
        topic_prefix=prefix,
        metrics_port=0,
        journal_sweep_seconds=args.sweep_seconds,
        agent={"journal_model_calls": "always"},
        tools={"catalog_wait_seconds": 0},
    )
    service, agent = assemble(settings, tools=StaticOffer.of(builtin_tools(settings.tools)))
    journal = agent.model.journal
    assert journal is not None
    stop = asyncio.Event()
    running = asyncio.create_task(service.run(stop))
    started = time.monotonic()
    await asyncio.to_thread(
        produce,
        args.bootstrap,
        prefix + "message_received",
        args.turns,
        args.conversations,
        args.rate,
    )
    while responses(args.bootstrap, prefix + "response_ready") < args.turns:
        if time.monotonic() - started > args.turns / args.rate + 300:
            print("not every turn was answered in time", file=sys.stderr)
            break
        await asyncio.sleep(1)
    answered = time.monotonic() - started
    # Let the last commits be confirmed and the sweep run twice.
    await asyncio.sleep(3 * args.sweep_seconds)
    held = sum(len(list(journal.store.items(p))) for p in journal.store.partitions)
    steps = service.registry.get_sample_value(
        "pipeline_journal_steps_total",
        {"service": "agent", "journal": JOURNAL, "kind": "model", "outcome": "called"},
    )
    expired = service.registry.get_sample_value(
        "pipeline_journal_expired_conversations_total", {"service": "agent", "journal": JOURNAL}
    )
    stop.set()
    await running
    # Kafka's cleaner compacts closed segments (2 s) every few seconds: give it a while.
    await asyncio.sleep(30)
    records, tombstones, keys = count_records(args.bootstrap, prefix + JOURNAL)
    written = 2 * int(steps or 0) + int(expired or 0)
    print(
        f"{args.turns:,} turns over {args.conversations:,} conversations, answered in "
        f"{answered:.0f}s; model calls journaled {int(steps or 0):,}"
    )
    print(
        f"journal records written            {written:,} (intent and result per call, "
        f"{int(expired or 0):,} tombstones from the sweep)"
    )
    print(f"conversations still in the journal {held:,} (after the sweep)")
    print(
        f"records left in the topic          {records:,} ({tombstones:,} tombstones, "
        f"{keys:,} keys) after compaction: {records / max(1, written):.1%} of those written"
    )
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
