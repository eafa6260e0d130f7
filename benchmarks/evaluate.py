"""How long ``pipeline evaluate`` takes over recorded turns, and how much memory it holds.

The real agent (deterministic provider) and tools service record ``--conversations``
conversations of ``--turns`` user messages each on a broker (a turn in four asks the
calculator, so tool calls and results are recorded too); then ``pipeline evaluate`` runs
as its own process over a quarter of them, over all of them, and over all of them with a
changed rule (so a baseline is replayed too), each timed and its peak resident memory
read (``VmHWM`` of the child's own memory, written as it exits). The evaluation streams
its conversations, so its peak memory should barely depend on how many there are.

    python benchmarks/evaluate.py [--conversations 250] [--turns 4] [--concurrency 8]

Uses KAFKA_BOOTSTRAP_SERVERS, or starts the local dev broker when it is unset.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, Producer, TopicPartition

from pipeline.config import Settings, bundled_dir
from pipeline.dev.kafka import DevKafka, create_topics, free_port
from pipeline.events.catalog import SchemaCatalog
from pipeline.events.model import Event, Metadata
from pipeline.events.serde import SingleObjectSerde
from pipeline.services import tools
from pipeline.services.agent import build

SERDE = SingleObjectSerde(SchemaCatalog.load(bundled_dir("schemas")))
TOPICS = (
    "message_received",
    "tool_called",
    "tool_result",
    "response_ready",
    "timer_requested",
    "timer_fired",
    "context_updated",
    "handoff_requested",
    "operator_message",
    "handoff_released",
    "approval_requested",
    "approval_decided",
    "agent_state_changelog",
    "dead_letters",
    "tool_catalog",
)
# Runs `pipeline ARGS` and writes its own peak resident memory (VmHWM, kB) to a file at
# exit: ru_maxrss of a child on Linux keeps the high-water mark of the forked parent.
MEASURED = """
import atexit, runpy, sys
out = sys.argv[1]
def peak():
    status = open("/proc/self/status").read()
    open(out, "w").write(status.split("VmHWM:")[1].split()[0])
atexit.register(peak)
sys.argv = ["pipeline", *sys.argv[2:]]
runpy.run_module("pipeline", run_name="__main__")
"""
TEXTS = ("hello", "what is {n}*7?", "my parcel {n} is late", "what did I say?")


@contextlib.contextmanager
def broker() -> Iterator[str]:
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        yield os.environ["KAFKA_BOOTSTRAP_SERVERS"]
        return
    with DevKafka(free_port(), controller_port=free_port()) as kafka:
        yield kafka.bootstrap_servers


def message(conversation: str, text: str) -> Event:
    metadata = Metadata.new("message_received", conversation, tenant_id="bench", producer="bench")
    address = {"channel": "web", "address": "http://127.0.0.1/cb", "thread_id": None}
    return Event(
        metadata,
        {"channel": "web", "sender_id": conversation, "text": text, "reply_to": address},
    )


def produce(bootstrap: str, topic: str, events: list[Event]) -> None:
    producer = Producer(
        {"bootstrap.servers": bootstrap, "partitioner": "murmur2_random", "linger.ms": 5}
    )
    for event in events:
        producer.produce(topic, SERDE.encode(event), event.conversation_id)
        producer.poll(0)
    assert producer.flush(60) == 0


def answered_turns(bootstrap: str, topic: str) -> set[str]:
    """The correlation ids of every answer on ``topic`` so far."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"bench-{uuid.uuid4()}",
            "enable.partition.eof": True,
        }
    )
    found: set[str] = set()
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
        ends = len(partitions)
        while ends:
            msg = consumer.poll(1.0)
            if msg is None:
                continue
            if msg.error() is not None:
                ends -= 1
                continue
            found.add(str(SERDE.decode(msg.value() or b"").metadata.correlation_id))
    finally:
        consumer.close()
    return found


async def record(settings: Settings, conversations: int, turns: int) -> float:
    bootstrap = settings.bootstrap_servers
    started = time.perf_counter()
    stop = asyncio.Event()
    runs = [asyncio.create_task(s.run(stop)) for s in (build(settings), tools.build(settings))]
    try:
        for turn in range(turns):
            wave = [
                message(f"bench-{c}", TEXTS[(c + turn) % len(TEXTS)].format(n=c))
                for c in range(conversations)
            ]
            produce(bootstrap, settings.topic("message_received"), wave)
            wanted = {str(e.id) for e in wave}
            deadline = time.monotonic() + 300
            while not wanted <= await asyncio.to_thread(
                answered_turns, bootstrap, settings.topic("response_ready")
            ):
                assert time.monotonic() < deadline, "the recording did not finish"
                await asyncio.sleep(1.0)
    finally:
        stop.set()
        await asyncio.gather(*runs)
    return time.perf_counter() - started


def evaluate(
    settings: Settings, sample: int, concurrency: int, report: Path, *extra: str
) -> dict[str, Any]:
    """``pipeline evaluate`` as a child process: its time and its own peak memory."""
    env = {
        **os.environ,
        "PIPELINE_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
        "PIPELINE_TOPIC_PREFIX": settings.topic_prefix,
    }
    arguments = [
        *("evaluate", "--sample", str(sample), "--concurrency", str(concurrency)),
        *("--json", str(report), *extra),
    ]
    peak = Path(report.with_suffix(".peak"))
    started = time.perf_counter()
    child = subprocess.Popen(
        [sys.executable, "-c", MEASURED, str(peak), *arguments],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - started
    code = os.waitstatus_to_exitcode(status)
    if code not in (0, 1):
        raise SystemExit(f"pipeline evaluate failed ({code}):\n{child.stderr.read()}")
    summary = json.loads(report.read_text())["summary"]
    return {
        "conversations": summary["conversations"],
        "inputs": summary["counts"]["inputs"],
        "changed": summary["changed_conversations"],
        "baseline": bool(extra),
        "seconds": round(seconds, 2),
        "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 2),
        "peak_rss_mb": round(int(peak.read_text()) / 1024, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--conversations", type=int, default=250)
    parser.add_argument("--turns", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    with broker() as bootstrap, tempfile.TemporaryDirectory() as tmp:
        prefix = f"bench-eval-{uuid.uuid4().hex[:8]}."
        create_topics(bootstrap, [prefix + t for t in TOPICS], 6)
        settings = Settings(
            bootstrap_servers=bootstrap,
            topic_prefix=prefix,
            metrics_port=0,
            commit_interval_seconds=0.2,
            tools={"catalog_wait_seconds": 5},
        )
        recorded = asyncio.run(record(settings, args.conversations, args.turns))
        print(f"recorded {args.conversations * args.turns} turns in {recorded:.1f}s", flush=True)
        results = []
        rule = ("-o", 'agent.handoff_phrases={"*": ["hello"]}')  # a changed rule: a baseline
        for sample, extra in (
            (max(1, args.conversations // 4), ()),
            (args.conversations, ()),
            (args.conversations, rule),
        ):
            report = Path(tmp) / f"{sample}-{len(extra)}.json"
            result = evaluate(settings, sample, args.concurrency, report, *extra)
            print(
                f"evaluated {result['conversations']} conversations ({result['inputs']} inputs"
                f"{', and the baseline' if extra else ''}) in {result['seconds']}s "
                f"({result['cpu_seconds']}s CPU), peak RSS {result['peak_rss_mb']} MB",
                flush=True,
            )
            results.append(result)
        print(json.dumps({"recorded_seconds": round(recorded, 1), "runs": results}))


if __name__ == "__main__":
    main()
