"""Latency of whole chat turns through the pipeline, against a raw four-hop Kafka relay.

A web turn ("what is 12*7?") goes gateway -> agent -> tools -> agent -> delivery -> a
local callback receiver. This starts those four services against a broker on 127.0.0.1,
drives turns at fixed open-loop rates (distinct conversations, keep-alive connections,
each turn timed from its scheduled send so a stalled sender cannot hide latency), and
reports per rate: the fraction delivered, p50/p95/p99/max from send to reply, each hop's
delay read from the record timestamps, and each service's CPU time per turn.

In the same run, at the same rates, it measures the floor: a raw confluent-kafka relay of
the same four hops (one process per hop: consume -> produce, no pipeline logic), on topics
with the same partitions and configs and with the runtime's producer settings. A relay
turn runs from its scheduled send to the creation time of the fourth hop's output, i.e.
the moment the fourth relay process had the record in hand, as the delivery service has
it when it posts the reply. The pipeline's p50 and p99 are printed as multiples of the
relay's.

Before any load it measures each service's idle CPU; after the rates it drives the
highest rate again for a few seconds and stops the services with SIGTERM mid-load,
timing each one's drain against its deadline.

    python benchmarks/turn_latency.py [--rates 10,50,100,200,400] [--seconds 12]
        [--profile DIR] [--model-latency 1] [--instances agent=2,delivery=2]

``--profile DIR`` records every service with py-spy during each rate and prints where
its CPU went (:mod:`cpu_profile`). ``--model-latency S`` answers with an
OpenAI-compatible stand-in model that thinks S seconds per call (two calls per turn)
instead of the deterministic one; a rate then holds when p99 stays under 2*S + 300 ms.
``--instances`` runs more instances of a service, each its own process in its group.

Uses --bootstrap or KAFKA_BOOTSTRAP_SERVERS (127.0.0.1 only), or starts the local dev
broker when neither is set. Every topic it makes is deleted at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from cpu_profile import Recorder  # the modules beside this one
from cpu_profile import table as profile_table
from turn_http import Connections, ModelStandIn, Receiver

from pipeline.config import Settings, bundled_dir
from pipeline.dev.kafka import DevKafka, free_port, port_in_use
from pipeline.dev.stack.local import LocalStack
from pipeline.events.catalog import SchemaCatalog
from pipeline.events.model import Event, Metadata
from pipeline.events.serde import SingleObjectSerde
from pipeline.runtime.producer import producer_config
from pipeline.topology import Topology, admin_client, apply, load_settings_topology

SERVICES = ("gateway", "agent", "tools", "delivery")
# The turn's Kafka path: each hop is named by the service that consumes the topic on its left.
PATH = ("message_received", "tool_called", "tool_result", "response_ready", "delivery_status")
HOPS = ("agent", "tools", "agent (2)", "delivery")
TOKEN = "bench-web-token"
LOCAL_HOSTS = ("127.0.0.1", "localhost")


# ----------------------------------------------------------------------------- measuring


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))
    return ordered[int(rank) - 1]


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process (all its threads) from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class TopicTimes:
    """Reads topics from the beginning in a thread: first record timestamp per key."""

    def __init__(self, bootstrap: str, topics: list[str]) -> None:
        self.times: dict[str, dict[str, int]] = {t: {} for t in topics}
        self._consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"turn-latency-reader-{uuid.uuid4()}",
                "enable.auto.commit": False,
            }
        )
        meta = self._consumer.list_topics(timeout=30).topics
        self._consumer.assign(
            [TopicPartition(t, p, OFFSET_BEGINNING) for t in topics for p in meta[t].partitions]
        )
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, name="topic-times", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._stop.is_set():
            for msg in self._consumer.consume(1000, 0.05):
                if msg.error() is not None or msg.key() is None:
                    continue
                by_key = self.times[msg.topic() or ""]
                key = (msg.key() or b"").decode()
                if key.startswith("web:"):  # the tenant's namespace: web:<tenant>:<turn key>
                    key = key.split(":", 2)[-1]
                by_key.setdefault(key, msg.timestamp()[1])

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self._consumer.close()


@dataclass
class Phase:
    """One side (pipeline or relay) at one rate."""

    side: str
    rate: float
    sent: dict[str, float] = field(default_factory=dict)  # key -> scheduled send time
    done: dict[str, float] = field(default_factory=dict)  # key -> reply time
    accepted: dict[str, float] = field(default_factory=dict)  # key -> the gateway's answer
    send_failures: int = 0
    cpu: dict[str, float] = field(default_factory=dict)  # process -> CPU seconds used
    wall: float = 0.0

    def summary(self, times: TopicTimes, prefix: str) -> dict[str, Any]:
        keys = list(self.sent)
        latencies = [(self.done[k] - self.sent[k]) * 1000 for k in keys if k in self.done]
        hops: dict[str, dict[str, float]] = {}
        stamps = [times.times[f"{prefix}{t}"] for t in PATH]
        for name, before, after in zip(HOPS, stamps, stamps[1:], strict=False):
            delays = [float(after[k] - before[k]) for k in keys if k in before and k in after]
            hops[name] = {"p50": percentile(delays, 50), "p99": percentile(delays, 99)}
        first = stamps[0]
        ingress = [first[k] - self.sent[k] * 1000 for k in keys if k in first]
        hops["ingress"] = {"p50": percentile(ingress, 50), "p99": percentile(ingress, 99)}
        delivered = len(latencies)
        answers = [(self.accepted[k] - self.sent[k]) * 1000 for k in keys if k in self.accepted]
        return {
            "side": self.side,
            "rate": self.rate,
            "sent": len(keys),
            "delivered": delivered,
            "fraction": delivered / len(keys) if keys else 0.0,
            "send_failures": self.send_failures,
            **{f"p{q}_ms": percentile(latencies, q) for q in (50, 95, 99)},
            "max_ms": max(latencies, default=float("nan")),
            # The gateway's 202, from the turn's scheduled send (pipeline side only).
            "accepted_ms": {q: percentile(answers, float(q[1:])) for q in ("p50", "p99")},
            "hops_ms": hops,
            "cpu_ms_per_turn": {
                name: seconds * 1000 / max(1, delivered) for name, seconds in self.cpu.items()
            },
            "cpu_share": {name: seconds / self.wall for name, seconds in self.cpu.items()},
        }


# ----------------------------------------------------------------------------- the relay


def relay_hop(bootstrap: str, source: str, sink: str, group: str, stop: Any) -> None:
    """One raw hop: consume a record, produce its bytes to the next topic. No logic."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "auto.offset.reset": "earliest",  # its topics are new: nothing is skipped
            "enable.auto.commit": True,
        }
    )
    settings = Settings(bootstrap_servers=bootstrap)
    producer = Producer(producer_config(settings, f"relay-{group}"))
    consumer.subscribe([source])
    while not stop.is_set():
        msg = consumer.poll(0.1)
        if msg is not None and msg.error() is None:
            producer.produce(sink, msg.value(), msg.key())
        producer.poll(0)
    producer.flush(10)
    consumer.close()


class Relay:
    """The four relay hops, each in its own process, on topics under ``prefix``."""

    def __init__(self, bootstrap: str, prefix: str) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.stop = ctx.Event()
        self.processes = [
            ctx.Process(
                target=relay_hop,
                args=(bootstrap, f"{prefix}{a}", f"{prefix}{b}", f"{prefix}hop{i}", self.stop),
                name=f"relay-{i}",
                daemon=True,
            )
            for i, (a, b) in enumerate(itertools.pairwise(PATH))
        ]
        for process in self.processes:
            process.start()

    @property
    def pids(self) -> dict[str, int]:
        return {f"relay-{HOPS[i]}": p.pid or 0 for i, p in enumerate(self.processes)}

    def close(self) -> None:
        self.stop.set()
        for process in self.processes:
            process.join(15)
            if process.is_alive():
                process.kill()


# ----------------------------------------------------------------------------- driving


def message_value() -> bytes:
    """A message_received of the pipeline's size, for the relay to carry."""
    serde = SingleObjectSerde(SchemaCatalog.load(bundled_dir("schemas")))
    metadata = Metadata.new("message_received", "relay", tenant_id="bench", producer="bench")
    reply_to = {"channel": "web", "address": "http://127.0.0.1:1/cb", "thread_id": None}
    data = {"channel": "web", "sender_id": "u", "text": "what is 12*7?", "reply_to": reply_to}
    return serde.encode(Event(metadata, data))


async def open_loop(phase: Phase, seconds: float, run_id: str, send: Any) -> None:
    """Call ``send(key)`` at the phase's rate for ``seconds``, never waiting on replies."""
    count = max(1, round(phase.rate * seconds))
    start = time.time() + 0.05
    tasks = set()
    for i in range(count):
        key = f"{run_id}-{phase.side}-{phase.rate:g}-{i}"
        scheduled = start + i / phase.rate
        delay = scheduled - time.time()
        if delay > 0:
            await asyncio.sleep(delay)
        phase.sent[key] = scheduled
        task = asyncio.ensure_future(send(key))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    await asyncio.gather(*tasks)


async def settle(phase: Phase, grace: float, delivered: Any) -> None:
    """Wait until every sent turn is delivered, at most ``grace`` seconds."""
    deadline = time.monotonic() + grace
    while delivered() < len(phase.sent) and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.05)


def replied_to(phase: Phase, replies: dict[str, float]) -> Any:
    """How many of the phase's turns have a reply, as a function to ask repeatedly."""
    return lambda: sum(1 for k in phase.sent if k in replies)


def measure_cpu(pids: dict[str, int]) -> dict[str, float]:
    return {name: cpu_seconds(pid) for name, pid in pids.items()}


async def run_phase(
    phase: Phase,
    pids: dict[str, int],
    seconds: float,
    grace: float,
    run_id: str,
    send: Any,
    delivered: Any,
    recorder: Recorder | None = None,
) -> None:
    if recorder is not None:
        for name, pid in pids.items():
            recorder.record(f"{name}@{phase.rate:g}", pid, seconds)
    cpu_before, started = measure_cpu(pids), time.monotonic()
    await open_loop(phase, seconds, run_id, send)
    await settle(phase, grace, delivered)
    phase.wall = time.monotonic() - started
    after = measure_cpu(pids)
    phase.cpu = {name: after[name] - cpu_before[name] for name in pids}
    if recorder is not None:
        recorder.wait()


# ----------------------------------------------------------------------------- the run


@contextlib.contextmanager
def broker(bootstrap: str | None) -> Iterator[str]:
    if bootstrap:
        hosts = {server.rsplit(":", 1)[0] for server in bootstrap.split(",")}
        if not hosts <= set(LOCAL_HOSTS):
            raise SystemExit(f"this benchmark only targets 127.0.0.1, not {bootstrap}")
        yield bootstrap
        return
    with DevKafka(free_port(), controller_port=free_port()) as kafka:
        yield kafka.bootstrap_servers


def free_port_run(count: int) -> int:
    """The first of ``count`` consecutive free ports."""
    for _ in range(50):
        base = free_port()
        if base + count < 65535 and not any(port_in_use(base + i) for i in range(count)):
            return base
    raise SystemExit("no run of free ports")


def relay_topics(bootstrap: str, prefix: str) -> None:
    """The relay's topics: the pipeline's definitions (partitions, configs) of its path."""
    settings = Settings(
        bootstrap_servers=bootstrap, topic_prefix=prefix, topic_replication_factor=1
    )
    topology = load_settings_topology(settings)
    apply(admin_client(settings), Topology(tuple(t for t in topology if t.name in PATH)), settings)


def delete_topics(bootstrap: str, prefixes: list[str]) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    names = [t for t in admin.list_topics(timeout=30).topics if t.startswith(tuple(prefixes))]
    if names:
        for future in admin.delete_topics(names, operation_timeout=30).values():
            with contextlib.suppress(Exception):
                future.result(timeout=60)


def fmt(value: float, digits: int = 0) -> str:
    return "-" if value != value else f"{value:,.{digits}f}"  # NaN prints as "-"


def by_service(values: dict[str, float]) -> dict[str, float]:
    """Figures per process summed per service (``agent#2`` is the agent's second instance)."""
    summed: dict[str, float] = {}
    for name, value in values.items():
        service = name.split("#", 1)[0]
        summed[service] = summed.get(service, 0.0) + value
    return summed


def report(
    results: list[dict[str, Any]],
    idle: dict[str, float],
    drain: dict[str, Any],
    p99_limit_ms: float = 1000.0,
) -> str:
    by = {(r["side"], r["rate"]): r for r in results}
    rates = sorted({r["rate"] for r in results})
    lines = [
        "| rate | delivered | p50 | p95 | p99 | max | relay delivered | relay p50 | relay p99 "
        "| p50 ÷ relay | p99 ÷ relay |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    nan = float("nan")
    for rate in rates:
        p, r = by[("pipeline", rate)], by.get(("relay", rate))
        relay = r or {"fraction": nan, "p50_ms": nan, "p99_ms": nan}
        lines.append(
            f"| {rate:g}/s | {p['fraction']:.1%} | {fmt(p['p50_ms'])} ms | {fmt(p['p95_ms'])} ms "
            f"| {fmt(p['p99_ms'])} ms | {fmt(p['max_ms'])} ms | {fmt(relay['fraction'] * 100, 1)}% "
            f"| {fmt(relay['p50_ms'])} ms | {fmt(relay['p99_ms'])} ms "
            f"| {fmt(p['p50_ms'] / relay['p50_ms'], 1)}x "
            f"| {fmt(p['p99_ms'] / relay['p99_ms'], 1)}x |"
        )
    lines += ["", "the gateway's 202 from the scheduled send, p50 / p99 ms", ""]
    for rate in rates:
        answer = by[("pipeline", rate)].get("accepted_ms") or {}
        lines.append(f"- {rate:g}/s: {fmt(answer.get('p50', nan))} / {fmt(answer.get('p99', nan))}")
    lines += ["", "per-hop delay from record timestamps, p50 / p99 ms (pipeline; relay)", ""]
    names = ["ingress", *HOPS]
    lines.append("| rate | " + " | ".join(names) + " |")
    lines.append("|---|" + "---|" * len(names))
    for rate in rates:
        for side in ("pipeline", "relay"):
            row = by.get((side, rate))
            if row is None:
                continue
            cells = [
                f"{fmt(row['hops_ms'][n]['p50'])} / {fmt(row['hops_ms'][n]['p99'])}" for n in names
            ]
            lines.append(f"| {rate:g}/s {side} | " + " | ".join(cells) + " |")
    lines += ["", "CPU ms per delivered turn (share of one core during the phase)", ""]
    relay_names = [f"relay-{h}" for h in HOPS]
    lines.append(
        "| rate | "
        + " | ".join(SERVICES)
        + " | services | "
        + " | ".join(relay_names)
        + " | relay | services ÷ relay |"
    )
    lines.append("|---|" + "---|" * (len(SERVICES) + len(relay_names) + 3))
    for rate in rates:
        p, r = by[("pipeline", rate)], by.get(("relay", rate))
        per_turn, share = by_service(p["cpu_ms_per_turn"]), by_service(p["cpu_share"])
        cells = [f"{per_turn[s]:.2f} ({share[s]:.0%})" for s in SERVICES]
        total = sum(per_turn[s] for s in SERVICES)
        relay_cells = [
            f"{r['cpu_ms_per_turn'][n]:.2f} ({r['cpu_share'][n]:.0%})" if r else "-"
            for n in relay_names
        ]
        relay_cpu = sum(r["cpu_ms_per_turn"].values()) if r else float("nan")
        lines.append(
            f"| {rate:g}/s | "
            + " | ".join(cells)
            + f" | {total:.2f} | "
            + " | ".join(relay_cells)
            + f" | {fmt(relay_cpu, 2)} | {fmt(total / relay_cpu, 1)}x |"
        )
    lines += ["", "idle CPU, % of one core: " + ", ".join(f"{k} {v:.2%}" for k, v in idle.items())]
    holding = [
        r["rate"]
        for r in results
        if r["side"] == "pipeline" and r["fraction"] == 1.0 and r["p99_ms"] < p99_limit_ms
    ]
    lines.append(
        f"highest rate with every turn delivered and p99 < {p99_limit_ms:,.0f} ms: "
        + (f"{max(holding):g} turns/s" if holding else "none")
    )
    lines.append(f"busiest service at each rate: {saturation(results)}")
    if drain:
        lines.append("SIGTERM under load: " + json.dumps(drain))
    return "\n".join(lines)


def saturation(results: list[dict[str, Any]]) -> str:
    parts = []
    for r in results:
        if r["side"] != "pipeline":
            continue
        name, share = max(r["cpu_share"].items(), key=lambda kv: kv[1])
        slowest = max(HOPS, key=lambda h: r["hops_ms"][h]["p99"] or 0)
        parts.append(f"{r['rate']:g}/s {name} {share:.0%} (slowest hop p99: {slowest})")
    return "; ".join(parts)


async def drive(args: argparse.Namespace, bootstrap: str) -> dict[str, Any]:
    run_id = uuid.uuid4().hex[:8]
    prefix, relay_prefix = f"turns-{run_id}.", f"relay-{run_id}."
    gateway_port, metrics_base = free_port(), free_port_run(len(SERVICES))
    receiver = Receiver()
    await receiver.start()
    model: ModelStandIn | None = None
    env = {
        "PIPELINE_BOOTSTRAP_SERVERS": bootstrap,
        "PIPELINE_TOPIC_PREFIX": prefix,
        "PIPELINE_TOPIC_REPLICATION_FACTOR": "1",
        "PIPELINE_GATEWAY__HOST": "127.0.0.1",
        "PIPELINE_GATEWAY__PORT": str(gateway_port),
        "PIPELINE_GATEWAY__WEB_TOKENS": json.dumps({"bench": TOKEN}),
        "PIPELINE_METRICS_HOST": "127.0.0.1",
        "PIPELINE_DRAIN_TIMEOUT_SECONDS": str(args.drain_deadline),
    }
    if args.model_latency is not None:
        # Two calls per turn (the tool call, then the answer), each thinking that long.
        model = ModelStandIn(args.model_latency)
        await model.start()
        env.update(
            {
                "PIPELINE_LLM__PROVIDER": "openai",
                "PIPELINE_LLM__BASE_URL": model.base_url,
                "PIPELINE_LLM__MODEL": "stand-in",
                "PIPELINE_LLM__API_KEY": "stand-in-key",
                "PIPELINE_LLM__ALLOWED_NETWORKS": '["127.0.0.0/8"]',
            }
        )
    env.update(dict(pair.split("=", 1) for pair in args.env))
    log_dir = Path(tempfile.mkdtemp(prefix="turn-latency-"))
    extra: dict[str, subprocess.Popen[bytes]] = {}
    stack = LocalStack(env, services=SERVICES, metrics_base_port=metrics_base, log_dir=log_dir)
    relay: Relay | None = None
    times: TopicTimes | None = None
    recorder = Recorder(args.profile) if args.profile is not None else None
    results: list[dict[str, Any]] = []
    idle: dict[str, float] = {}
    drain: dict[str, Any] = {}
    try:
        stack.start()
        assert stack.supervisor is not None
        pids = {s.name: s.process.pid for s in stack.supervisor.services if s.process}
        extra = start_instances(args.instances, stack, log_dir)
        pids.update({name: process.pid for name, process in extra.items()})
        print(f"services {pids}, logs in {log_dir}", flush=True)
        if not args.no_relay:
            relay_topics(bootstrap, relay_prefix)
            relay = Relay(bootstrap, relay_prefix)
        topics = [f"{prefix}{t}" for t in PATH]
        if relay is not None:
            topics += [f"{relay_prefix}{t}" for t in PATH]
        times = TopicTimes(bootstrap, topics)
        gateway = Connections("127.0.0.1", gateway_port)
        callback = f"http://127.0.0.1:{receiver.port}/cb"

        async def send_turn(key: str) -> None:
            body = json.dumps(
                {
                    "conversation_id": key,
                    "user_id": key,
                    "text": "what is 12*7?",
                    "callback_url": callback,
                }
            ).encode()
            phase = current
            status = await gateway.post(
                "/v1/web/messages", body, {"Authorization": f"Bearer {TOKEN}"}
            )
            if status != 202:
                phase.send_failures += 1
            else:
                phase.accepted[key] = time.time()

        relay_producer = Producer(
            producer_config(Settings(bootstrap_servers=bootstrap), "relay-driver")
        )
        relay_value = message_value()

        async def send_relay(key: str) -> None:
            relay_producer.produce(f"{relay_prefix}{PATH[0]}", relay_value, key)
            relay_producer.poll(0)

        relay_done = times.times[f"{relay_prefix}{PATH[-1]}"] if relay is not None else {}

        def relay_delivered() -> int:
            relay_producer.poll(0)
            return sum(1 for k in current.sent if k in relay_done)

        # Warm up: group joins, first fetches, connection set-up are not what is measured.
        current = Phase("warmup", 10)
        await open_loop(current, args.warmup_seconds, run_id, send_turn)
        await settle(current, 60, lambda: sum(1 for k in current.sent if k in receiver.replies))
        if current.send_failures or len(receiver.replies) < len(current.sent):
            raise SystemExit(f"warm-up turns were not all delivered (logs in {log_dir})")
        if relay is not None:
            current = Phase("relay-warmup", 10)
            await open_loop(current, args.warmup_seconds, run_id, send_relay)
            await settle(current, 60, relay_delivered)
        await asyncio.sleep(1.0)
        cpu_before = measure_cpu(pids)
        await asyncio.sleep(args.idle_seconds)
        cpu_after = measure_cpu(pids)
        idle = {s: (cpu_after[s] - cpu_before[s]) / args.idle_seconds for s in pids}
        print("idle CPU, share of one core:", {k: f"{v:.2%}" for k, v in idle.items()}, flush=True)

        for rate in args.rates:
            if relay is not None:
                current = Phase("relay", rate)
                await run_phase(
                    current,
                    relay.pids,
                    args.seconds,
                    args.grace,
                    run_id,
                    send_relay,
                    relay_delivered,
                )
                for key in current.sent:
                    if key in relay_done:
                        current.done[key] = relay_done[key] / 1000
                results.append(current.summary(times, relay_prefix))
                print(json.dumps(results[-1]), flush=True)
            current = Phase("pipeline", rate)
            replies = receiver.replies
            await run_phase(
                current,
                pids,
                args.seconds,
                args.grace,
                run_id,
                send_turn,
                replied_to(current, replies),
                recorder,
            )
            current.done = {k: replies[k] for k in current.sent if k in replies}
            await asyncio.sleep(0.5)  # the delivery_status of the last replies
            results.append(current.summary(times, prefix))
            print(json.dumps(results[-1]), flush=True)

        if args.drain_check:
            drain = await drain_under_load(args, stack, run_id, send_turn)
        await gateway.close()
    finally:
        if times is not None:
            times.close()
        if relay is not None:
            relay.close()
        stop_instances(extra)
        stack.stop()
        await receiver.stop()
        if model is not None:
            await model.stop()
        delete_topics(bootstrap, [prefix, relay_prefix])
    limit = 1000.0 if args.model_latency is None else 2000 * args.model_latency + 300
    text = report(results, idle, drain, limit)
    if args.profile is not None:
        text += "\n\nwhere the Python threads' CPU went (py-spy samples)\n\n"
        text += profile_table(args.profile)
    print(text, flush=True)
    return {
        "results": results,
        "idle_cpu_share": idle,
        "drain": drain,
        "report": text,
        "logs": str(log_dir),
    }


def start_instances(
    counts: dict[str, int], stack: LocalStack, log_dir: Path
) -> dict[str, subprocess.Popen[bytes]]:
    """More instances of some services (``{"agent": 2}``: one more agent), each its own
    process in the same consumer group, ready before this returns."""
    started: dict[str, tuple[subprocess.Popen[bytes], int]] = {}
    for service, count in counts.items():
        for n in range(2, count + 1):
            port = free_port()
            name = f"{service}#{n}"
            env = {**os.environ, **stack.env, "PIPELINE_METRICS_PORT": str(port)}
            output = (log_dir / f"{service}-{n}.log").open("ab")
            process = subprocess.Popen(
                [sys.executable, "-m", "pipeline", "run", service],
                env=env,
                stdout=output,
                stderr=subprocess.STDOUT,
            )
            started[name] = (process, port)
    deadline = time.monotonic() + 120
    waiting = dict(started)
    while waiting and time.monotonic() < deadline:
        for name, (process, port) in list(waiting.items()):
            if process.poll() is not None:
                raise SystemExit(f"{name} exited with {process.returncode} (logs in {log_dir})")
            with contextlib.suppress(OSError):
                url = f"http://127.0.0.1:{port}/readyz"
                with urllib.request.urlopen(url, timeout=2) as answer:
                    if answer.status == 200:
                        del waiting[name]
        time.sleep(0.5)
    if waiting:
        raise SystemExit(f"not ready: {sorted(waiting)} (logs in {log_dir})")
    return {name: process for name, (process, _) in started.items()}


def stop_instances(processes: dict[str, subprocess.Popen[bytes]]) -> None:
    for process in processes.values():
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for process in processes.values():
        try:
            process.wait(40)
        except subprocess.TimeoutExpired:
            process.kill()


async def drain_under_load(
    args: argparse.Namespace, stack: LocalStack, run_id: str, send_turn: Any
) -> dict[str, Any]:
    """Drive the highest rate, SIGTERM every service mid-load, time each one's exit."""
    rate = max(args.rates)
    phase = Phase("drain", rate)
    load = asyncio.ensure_future(open_loop(phase, args.drain_load_seconds, run_id, send_turn))
    await asyncio.sleep(args.drain_load_seconds * 0.9)
    assert stack.supervisor is not None
    stack.supervisor.stopping.set()
    signalled = time.monotonic()
    procs = {s.name: s.process for s in stack.supervisor.services if s.process}
    for proc in procs.values():
        proc.send_signal(signal.SIGTERM)
    exits: dict[str, Any] = {}
    while len(exits) < len(procs) and time.monotonic() - signalled < args.drain_deadline + 15:
        for name, proc in procs.items():
            if name not in exits and proc.poll() is not None:
                exits[name] = {
                    "seconds": round(time.monotonic() - signalled, 2),
                    "code": proc.returncode,
                }
        await asyncio.sleep(0.02)
    load.cancel()
    with contextlib.suppress(BaseException):
        await load
    return {"rate": rate, "deadline_seconds": args.drain_deadline, "exits": exits}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bootstrap", default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS"))
    parser.add_argument(
        "--rates", default="10,50,100,200,400", type=lambda s: [float(r) for r in s.split(",")]
    )
    parser.add_argument("--seconds", type=float, default=12.0, help="Sending time per rate.")
    parser.add_argument(
        "--grace", type=float, default=15.0, help="Longest wait for the last replies of a rate."
    )
    parser.add_argument("--warmup-seconds", type=float, default=2.0, help="At 10 turns/s.")
    parser.add_argument("--idle-seconds", type=float, default=10.0)
    parser.add_argument("--no-relay", action="store_true")
    parser.add_argument("--drain-check", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--drain-load-seconds", type=float, default=4.0)
    parser.add_argument(
        "--drain-deadline",
        type=float,
        default=30.0,
        help="PIPELINE_DRAIN_TIMEOUT_SECONDS of the services.",
    )
    parser.add_argument("--json", type=Path, help="Write the results here too.")
    parser.add_argument(
        "--model-latency",
        type=float,
        help="Answer with an OpenAI-compatible stand-in model that thinks this many seconds "
        "per call (two calls per turn) instead of the deterministic one; a rate holds when "
        "p99 stays under twice this plus 300 ms.",
    )
    parser.add_argument(
        "--instances",
        type=lambda s: {k: int(v) for k, v in (p.split("=") for p in s.split(",") if p)},
        default={},
        help="Instances per service, each its own process: agent=2,delivery=2.",
    )
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        help="A PIPELINE_* setting for every service, NAME=VALUE (repeatable).",
    )
    parser.add_argument(
        "--profile",
        type=Path,
        help="Record each service with py-spy during each rate into this folder "
        "(benchmarks/cpu_profile.py reads it) and print where the CPU went.",
    )
    args = parser.parse_args()
    with broker(args.bootstrap) as bootstrap:
        outcome = asyncio.run(drive(args, bootstrap))
    if args.json is not None:
        args.json.write_text(json.dumps(outcome, indent=1))


if __name__ == "__main__":
    main()
