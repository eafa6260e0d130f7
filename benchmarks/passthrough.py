"""Throughput of the pipeline runtime against a raw confluent-kafka loop, same broker, same run.

Both read the same N Avro events from one topic and write N events to another:

* baseline: a plain ``consume`` -> ``produce`` loop copying bytes (no decode, no commit);
* pipeline: a Service whose handler receives the decoded event and emits a new one
  (Avro decode -> handler -> Avro encode), with the runtime's ordering, watermark commits
  and delivery tracking.

Each is timed from its first record consumed to its last output acknowledged, so group
joins do not count. The ratio pipeline/baseline is what matters.

    python benchmarks/passthrough.py [--events 50000] [--partitions 6] [--rounds 3]

Uses KAFKA_BOOTSTRAP_SERVERS, or starts the local dev broker when it is unset.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import time
import uuid
from collections.abc import Iterator

from confluent_kafka import Consumer, Producer
from prometheus_client import CollectorRegistry

from pipeline.config import Settings, bundled_dir
from pipeline.devkafka import DevKafka, create_topics, free_port
from pipeline.events.catalog import SchemaCatalog
from pipeline.events.model import Event, Metadata
from pipeline.events.serde import SingleObjectSerde
from pipeline.runtime.context import Context
from pipeline.runtime.service import Service

SERDE = SingleObjectSerde(SchemaCatalog.load(bundled_dir("schemas")))


@contextlib.contextmanager
def broker() -> Iterator[str]:
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        yield os.environ["KAFKA_BOOTSTRAP_SERVERS"]
        return
    with DevKafka(free_port(), controller_port=free_port()) as kafka:
        yield kafka.bootstrap_servers


def fill(bootstrap: str, topic: str, events: int, conversations: int) -> None:
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "partitioner": "murmur2_random",
            "linger.ms": 20,
            "compression.type": "lz4",
        }
    )
    for i in range(events):
        conversation = f"conv-{i % conversations}"
        metadata = Metadata.new(
            "message_received", conversation, tenant_id="bench", producer="bench"
        )
        value = SERDE.encode(
            Event(
                metadata,
                {
                    "channel": "web",
                    "sender_id": "u",
                    "text": f"message {i}",
                    "reply_to": {
                        "channel": "web",
                        "address": "http://127.0.0.1/cb",
                        "thread_id": None,
                    },
                },
            )
        )
        while True:
            try:
                producer.produce(topic, value=value, key=conversation)
                break
            except BufferError:
                producer.poll(0.01)
        producer.poll(0)
    assert producer.flush(60) == 0


def raw_loop(bootstrap: str, source: str, sink: str, events: int) -> float:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"raw-{uuid.uuid4()}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "partitioner": "murmur2_random",
            "linger.ms": 5,
            "enable.idempotence": True,
            "acks": "all",
            "compression.type": "lz4",
        }
    )
    consumer.subscribe([source])
    seen, started = 0, 0.0
    while seen < events:
        for msg in consumer.consume(500, 0.1):
            if msg.error():
                continue
            if not seen:
                started = time.perf_counter()
            seen += 1
            while True:
                try:
                    producer.produce(sink, value=msg.value(), key=msg.key())
                    break
                except BufferError:
                    producer.poll(0.01)
        producer.poll(0)
    assert producer.flush(60) == 0
    elapsed = time.perf_counter() - started
    consumer.close()
    return events / elapsed


async def pipeline_service(bootstrap: str, prefix: str, events: int) -> float:
    registry = CollectorRegistry()
    settings = Settings(bootstrap_servers=bootstrap, topic_prefix=prefix, metrics_port=0)
    service = Service("bench", settings=settings, registry=registry)
    first: list[float] = []

    @service.handler("message_received")
    async def passthrough(event: Event, ctx: Context) -> None:
        if not first:
            first.append(time.perf_counter())
        ctx.emit("response_ready", {"reply_to": event["reply_to"], "text": event["text"]})

    labels = {
        "service": "bench",
        "topic": f"{prefix}response_ready",
        "event_type": "response_ready",
    }
    stop = asyncio.Event()
    task = asyncio.create_task(service.run(stop))
    while (registry.get_sample_value("pipeline_events_produced_total", labels) or 0) < events:
        if task.done():
            task.result()
        await asyncio.sleep(0.002)
    elapsed = time.perf_counter() - first[0]
    stop.set()
    await task
    return events / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--conversations", type=int, default=5_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    results: dict[str, list[float]] = {"raw": [], "pipeline": []}
    with broker() as bootstrap:
        for round_ in range(args.rounds):
            prefix = f"bench-{uuid.uuid4().hex[:6]}."
            create_topics(
                bootstrap,
                [
                    f"{prefix}{t}"
                    for t in ("message_received", "response_ready", "raw_out", "dead_letters")
                ],
                args.partitions,
            )
            fill(bootstrap, f"{prefix}message_received", args.events, args.conversations)
            # Alternate the order so neither side always runs on a warmer broker.
            order = ["raw", "pipeline"] if round_ % 2 == 0 else ["pipeline", "raw"]
            for side in order:
                if side == "raw":
                    rate = raw_loop(
                        bootstrap, f"{prefix}message_received", f"{prefix}raw_out", args.events
                    )
                else:
                    rate = asyncio.run(pipeline_service(bootstrap, prefix, args.events))
                results[side].append(rate)
                print(f"round {round_ + 1} {side:>8}: {rate:>9,.0f} events/s", flush=True)
    raw, pipe = statistics.median(results["raw"]), statistics.median(results["pipeline"])
    summary = {
        "events": args.events,
        "partitions": args.partitions,
        "raw_events_per_s": round(raw),
        "pipeline_events_per_s": round(pipe),
        "ratio": round(pipe / raw, 3),
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
