"""Throughput of the pipeline runtime against raw confluent-kafka loops, same broker, same run.

All read the same N Avro events from one topic and write N events to another:

* raw-avro (the baseline): a plain ``consume`` -> fastavro decode -> new event ->
  fastavro encode -> ``produce`` loop, with no ordering, commits or delivery tracking;
* raw-copy (for scale): the same loop copying bytes, no Avro at all;
* pipeline: a Service whose handler receives the decoded event and emits a new one, with
  the runtime's per-conversation ordering, watermark commits and delivery tracking.

Each is timed from its first record consumed to its last output acknowledged, so group
joins do not count; the process CPU time over the same span is reported per event too
(steadier than throughput when the broker shares the machine). The ratio pipeline /
raw-avro is the cost of the runtime; it is taken per round (the sides of a round run
back to back) and the median is reported.

    python benchmarks/passthrough.py [--events 50000] [--partitions 6] [--rounds 5]
        [--mode at_least_once|exactly_once|both]

With ``--mode both`` (the default) the pipeline runs in each round in both processing
guarantees (``pipeline`` and ``pipeline-eos``); exactly-once is timed until the
transaction holding its last output committed, when a read_committed reader sees it.

Uses KAFKA_BOOTSTRAP_SERVERS, or starts the local dev broker when it is unset.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import os
import statistics
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import fastavro
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient
from prometheus_client import CollectorRegistry

from pipeline.config import Settings, bundled_dir
from pipeline.dev.kafka import DevKafka, create_topics, free_port
from pipeline.events.catalog import KnownSchema, SchemaCatalog
from pipeline.events.model import Event, Metadata
from pipeline.events.serde import HEADER_SIZE, MAGIC, SingleObjectSerde
from pipeline.runtime import event_loop
from pipeline.runtime.context import Context
from pipeline.runtime.service import Service, tune_gc

SERDE = SingleObjectSerde(SchemaCatalog.load(bundled_dir("schemas")))


@contextlib.contextmanager
def broker() -> Iterator[str]:
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        yield os.environ["KAFKA_BOOTSTRAP_SERVERS"]
        return
    with DevKafka(free_port(), controller_port=free_port()) as kafka:
        yield kafka.bootstrap_servers


def delete_topics(bootstrap: str, topics: list[str]) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.delete_topics(topics, operation_timeout=30).values():
        future.result(timeout=60)


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


Measurement = tuple[float, float]  # events/s, process CPU µs per event (all threads)


def raw_loop(bootstrap: str, source: str, sink: str, events: int, *, avro: bool) -> Measurement:
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
    reader = SERDE.catalog.reader("message_received")
    writer = SERDE.catalog.reader("response_ready")
    consumer.subscribe([source])
    seen, started, cpu = 0, 0.0, 0.0
    while seen < events:
        for msg in consumer.consume(500, 0.1):
            if msg.error():
                continue
            if not seen:
                started, cpu = time.perf_counter(), time.process_time()
            seen += 1
            value = msg.value() or b""
            if avro:
                value = _avro_passthrough(value, reader.parsed, writer)
            while True:
                try:
                    producer.produce(sink, value=value, key=msg.key())
                    break
                except BufferError:
                    producer.poll(0.01)
        producer.poll(0)
    assert producer.flush(60) == 0
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    consumer.close()
    return events / elapsed, cpu / events * 1e6


def _avro_passthrough(value: bytes, reader: Any, writer: KnownSchema) -> bytes:
    """What a hand-written service does per record: decode, build an event, encode."""
    incoming = fastavro.schemaless_reader(io.BytesIO(value[HEADER_SIZE:]), reader, None)
    assert isinstance(incoming, dict)
    cause = incoming["metadata"]
    out = io.BytesIO()
    out.write(MAGIC)
    out.write(writer.fingerprint)
    fastavro.schemaless_writer(
        out,
        writer.parsed,
        {
            "metadata": {
                **cause,
                "event_id": uuid.uuid4(),
                "event_type": "response_ready",
                "causation_id": cause["event_id"],
                "occurred_at": datetime.now(UTC),
                "producer": "raw",
            },
            "reply_to": incoming["reply_to"],
            "text": incoming["text"],
        },
    )
    return out.getvalue()


async def pipeline_service(
    bootstrap: str,
    prefix: str,
    events: int,
    guarantee: str = "at_least_once",
    side: str = "pipeline",
) -> Measurement:
    registry = CollectorRegistry()
    settings = Settings(
        bootstrap_servers=bootstrap,
        topic_prefix=prefix,
        metrics_port=0,
        processing_guarantee=guarantee,
    )
    name = {"pipeline": "bench", "pipeline-eos": "bench-eos"}.get(side, f"bench-{side}")
    service = Service(name, settings=settings, registry=registry)
    first: list[tuple[float, float]] = []

    @service.handler("message_received")
    async def passthrough(event: Event, ctx: Context) -> None:
        if not first:
            first.append((time.perf_counter(), time.process_time()))
        ctx.emit("response_ready", {"reply_to": event["reply_to"], "text": event["text"]})

    labels = {
        "service": name,
        "topic": f"{prefix}response_ready",
        "event_type": "response_ready",
    }
    commits = {"service": name, "outcome": "success"}
    stop = asyncio.Event()
    task = asyncio.create_task(service.run(stop))
    while (registry.get_sample_value("pipeline_events_produced_total", labels) or 0) < events:
        if task.done():
            task.result()
        await asyncio.sleep(0.002)
    if guarantee == "exactly_once":
        # Readers see the outputs once the transaction holding the last of them commits:
        # every record is finished now, so the next successful commit covers them all.
        before = registry.get_sample_value("pipeline_offset_commits_total", commits) or 0
        while (registry.get_sample_value("pipeline_offset_commits_total", commits) or 0) <= before:
            if task.done():
                task.result()
            await asyncio.sleep(0.002)
    elapsed, cpu = time.perf_counter() - first[0][0], time.process_time() - first[0][1]
    stop.set()
    await task
    return events / elapsed, cpu / events * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--conversations", type=int, default=5_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--mode",
        choices=("at_least_once", "exactly_once", "both"),
        default="both",
        help="Processing guarantee of the pipeline side; both runs each in every round.",
    )
    parser.add_argument(
        "--loop",
        choices=("auto", "asyncio", "uvloop"),
        default="auto",
        help="The pipeline side's event loop (PIPELINE_EVENT_LOOP).",
    )
    parser.add_argument(
        "--compare-loops",
        action="store_true",
        help="Also run the at-least-once pipeline on asyncio's own loop (pipeline-asyncio).",
    )
    args = parser.parse_args()
    tune_gc()  # as `pipeline run` does; the same process settings for every side
    pipelines = {
        "at_least_once": ["pipeline"],
        "exactly_once": ["pipeline-eos"],
        "both": ["pipeline", "pipeline-eos"],
    }[args.mode]
    if args.compare_loops:
        pipelines.append("pipeline-asyncio")
    results: dict[str, list[float]] = {"raw-avro": [], "raw-copy": []}
    results.update({side: [] for side in pipelines})
    cpu: dict[str, list[float]] = {side: [] for side in results}
    with broker() as bootstrap:
        for round_ in range(args.rounds):
            prefix = f"bench-{uuid.uuid4().hex[:6]}."
            names = ("message_received", "response_ready", "raw_avro", "raw_copy", "dead_letters")
            topics = [f"{prefix}{t}" for t in names]
            create_topics(bootstrap, topics, args.partitions)
            fill(bootstrap, f"{prefix}message_received", args.events, args.conversations)
            # Rotate the order so no side always runs on the warmest broker.
            order = list(results)
            order = order[round_ % len(order) :] + order[: round_ % len(order)]
            for side in order:
                source = f"{prefix}message_received"
                if side.startswith("pipeline"):
                    guarantee = "exactly_once" if side == "pipeline-eos" else "at_least_once"
                    loop = "asyncio" if side == "pipeline-asyncio" else args.loop
                    rate, micros = event_loop.run(
                        pipeline_service(bootstrap, prefix, args.events, guarantee, side), loop
                    )
                else:
                    sink = f"{prefix}{side.replace('-', '_')}"
                    avro = side == "raw-avro"
                    rate, micros = raw_loop(bootstrap, source, sink, args.events, avro=avro)
                results[side].append(rate)
                cpu[side].append(micros)
                print(
                    f"round {round_ + 1} {side:>12}: {rate:>9,.0f} events/s, "
                    f"{micros:6.1f} µs CPU per event",
                    flush=True,
                )
            # Later rounds should not run on a broker that holds every earlier round.
            delete_topics(bootstrap, topics)
    median = {side: statistics.median(rates) for side, rates in results.items()}

    def ratio(side: str, base: str) -> float:
        # Each round runs every side back to back on the same topic, so a round's ratio
        # is paired: the machine's drift between rounds cancels out of it.
        pairs = zip(results[side], results[base], strict=True)
        return round(statistics.median([s / b for s, b in pairs]), 3)

    def cpu_ratio(side: str) -> float:
        pairs = zip(cpu["raw-avro"], cpu[side], strict=True)
        return round(statistics.median([r / p for r, p in pairs]), 3)

    summary: dict[str, object] = {
        "events": args.events,
        "partitions": args.partitions,
        "rounds": args.rounds,
        **{f"{side}_events_per_s": round(rate) for side, rate in median.items()},
        # Client CPU per event (all the process's threads, not the broker's): steadier
        # than throughput on a shared machine.
        **{f"{side}_cpu_us_per_event": round(statistics.median(v), 1) for side, v in cpu.items()},
    }
    if "pipeline" in results:
        pipeline = results["pipeline"]
        summary.update(
            ratio_to_raw_avro=ratio("pipeline", "raw-avro"),
            ratio_to_raw_copy=ratio("pipeline", "raw-copy"),
            ratio_to_raw_avro_by_round=[
                round(p / b, 3) for p, b in zip(pipeline, results["raw-avro"], strict=True)
            ],
            cpu_ratio_raw_avro_to_pipeline=cpu_ratio("pipeline"),
        )
    if "pipeline-asyncio" in results:
        summary["asyncio_ratio_to_raw_avro"] = ratio("pipeline-asyncio", "raw-avro")
        summary["asyncio_cpu_ratio_raw_avro_to_pipeline"] = cpu_ratio("pipeline-asyncio")
    if "pipeline-eos" in results:
        summary["eos_ratio_to_raw_avro"] = ratio("pipeline-eos", "raw-avro")
        summary["eos_cpu_ratio_raw_avro_to_pipeline"] = cpu_ratio("pipeline-eos")
    if "pipeline" in results and "pipeline-eos" in results:
        # The cost of exactly-once: its throughput over at-least-once's, same rounds.
        summary["eos_ratio_to_at_least_once"] = ratio("pipeline-eos", "pipeline")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
