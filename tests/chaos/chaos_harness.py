"""A chaos run on a local three-broker cluster: faults while inputs are produced, then a
full comparison of inputs and outputs.

Two instances of ``chaos_app`` (one consumer group) pass events through while a thread
produces the inputs (per-conversation sequence numbers, 1% poison) at an even rate, one
thread SIGKILLs instances at random moments (each is restarted at once, as a supervisor
would) and another takes brokers down one at a time: SIGKILL and restart, a clean
restart, a SIGSTOP pause. Between broker faults the harness waits until every partition
is fully replicated again, so no fault meets a partition already below
``min.insync.replicas``. A coordinator kill takes down, with SIGKILL, the node that is
the group's coordinator at that moment: the one the instances send their commits (and,
in exactly-once mode, their transactions' offsets) to. In exactly-once mode the inputs
are written in transactions too, so the input topic holds transaction markers. When the
group has caught up the instances are stopped with SIGTERM; once every partition's last
stable offset has reached its high watermark (no transaction left open), the three topics
are read in full (``read_committed``) and compared (:mod:`chaos_check`), and the group's
lag is read with the Admin API and with Kafka's own consumer-groups tool. Every wait is
bounded.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
)
from confluent_kafka import TopicPartition as TP
from confluent_kafka.admin import AdminClient, NewTopic

from pipeline.config import bundled_dir
from pipeline.dev.kafka import DevKafkaCluster, port_in_use
from pipeline.dev.kafka.tools import group_lag as kafka_tool_lag
from pipeline.events.catalog import SchemaCatalog
from pipeline.events.model import Event, Metadata
from pipeline.events.serde import SingleObjectSerde
from pipeline.runtime.dead_letter import dead_letter_id
from pipeline.runtime.headers import EVENT_ID
from tests.chaos.chaos_app import POISON, SERVICE_NAME
from tests.chaos.chaos_check import AT_LEAST_ONCE, Comparison, Input, Letter, Output, compare
from tests.kafka_admin import end_offsets, group_lag, wait_stable

SERDE = SingleObjectSerde(SchemaCatalog.load(bundled_dir("schemas")))
CHAOS_DIR = Path(__file__).resolve().parent
REPO = CHAOS_DIR.parents[1]
HEAP = ("-Xmx384m",)
# The harness's own clients log only critical events: brokers going down is the point.
QUIET = {"log_level": 2}
INPUT, OUTPUT, DEAD = "message_received", "response_ready", "dead_letters"
# An idempotent acks=all producer keeps each conversation in order through broker faults,
# and its timeout outlasts them.
INPUT_PRODUCER = {
    "partitioner": "murmur2_random",
    "enable.idempotence": True,
    "acks": "all",
    "linger.ms": 5,
    "message.timeout.ms": 300_000,
    **QUIET,
}
INPUT_TRANSACTION = 50  # inputs per transaction when they are written in transactions
# What an instance logs when it exits because a Kafka call never returned.
STUCK_EXIT = "exiting with a Kafka call still stuck in the client"


@dataclass(frozen=True)
class ChaosPlan:
    events: int = 10_000
    conversations: int = 1_000
    partitions: int = 6
    service_kills: int = 3
    broker_kills: int = 1
    coordinator_kills: int = 0  # SIGKILL of the node coordinating the group, then restart
    clean_restarts: int = 1
    pauses: int = 1
    pause_seconds: float = 5.0
    poison_ratio: float = 0.01
    burst: int = 1  # consecutive inputs of one conversation
    produce_seconds: float = 40.0
    guarantee: str = AT_LEAST_ONCE
    transactional_inputs: bool = False  # inputs written in transactions (markers in the log)
    commit_interval_seconds: float = 1.0
    settle_seconds: float = 150.0
    seed: int = 0


@dataclass
class ChaosRun:
    plan: ChaosPlan
    comparison: Comparison = field(default_factory=Comparison)
    final_lag: int = -1  # by the Admin API
    tool_lag: int = -1  # by Kafka's consumer-groups tool
    open_transactions: dict[tuple[str, int], int] = field(default_factory=dict)
    service_kills: int = 0
    broker_faults: list[str] = field(default_factory=list)
    unexpected_exits: int = 0
    stuck_exits: int = 0  # exits on a Kafka call that never returned (the runtime's deadline)
    errors: list[str] = field(default_factory=list)
    produce_errors: list[str] = field(default_factory=list)
    caught_up: bool = False
    seconds: float = 0.0

    @property
    def repeats_per_service_kill(self) -> float:
        return self.comparison.duplicates / max(1, self.service_kills)

    def problems(self) -> list[str]:
        found = self.comparison.problems(self.plan.guarantee)
        if self.open_transactions:
            found.append(f"open_transactions={self.open_transactions}")
        if self.final_lag != 0:
            found.append(f"final_lag={self.final_lag}")
        if self.tool_lag != 0:
            found.append(f"tool_lag={self.tool_lag}")
        if self.unexpected_exits:
            found.append(f"unexpected_exits={self.unexpected_exits}")
        found.extend(self.errors)
        if self.produce_errors:
            found.append(f"produce_errors={len(self.produce_errors)}")
        if self.service_kills != self.plan.service_kills:
            found.append(f"service_kills={self.service_kills} of {self.plan.service_kills}")
        planned = (
            self.plan.broker_kills
            + self.plan.coordinator_kills
            + self.plan.clean_restarts
            + self.plan.pauses
        )
        if len(self.broker_faults) != planned:
            found.append(f"broker_faults={len(self.broker_faults)} of {planned}")
        return found

    def report(self) -> str:
        p = self.plan
        lines = [
            f"chaos ({p.guarantee}, seed {p.seed}): {p.events:,} events"
            f"{' (written in transactions)' if p.transactional_inputs else ''} over "
            f"{p.conversations:,} conversations (bursts of {p.burst}) in "
            f"{p.produce_seconds:.0f}s, "
            f"{p.partitions} partitions, two instances, commit interval "
            f"{p.commit_interval_seconds}s; {self.seconds:.0f}s in all",
            f"faults: {self.service_kills} SIGKILLs of an instance; brokers: "
            f"{', '.join(self.broker_faults) or 'none'}",
            *self.comparison.lines(),
            f"repeats per instance SIGKILL {self.repeats_per_service_kill:.0f}; "
            f"final consumer lag {self.final_lag} (Admin API), {self.tool_lag} "
            f"(kafka-consumer-groups); transactions left open "
            f"{len(self.open_transactions)}; unexpected exits {self.unexpected_exits}; "
            f"exits on a stuck Kafka call {self.stuck_exits}",
            *self.comparison.examples,
        ]
        return "\n".join(lines)


def run_chaos(cluster: DevKafkaCluster, plan: ChaosPlan, workdir: Path, prefix: str) -> ChaosRun:
    """One chaos run on ``cluster`` (running), its topics named ``<prefix><type>``."""
    started = time.monotonic()
    run = ChaosRun(plan)
    bootstrap = cluster.bootstrap_servers
    topics = [prefix + name for name in (INPUT, OUTPUT, DEAD)]
    create_replicated_topics(bootstrap, topics, plan.partitions)
    rng = random.Random(plan.seed)
    with Instances(bootstrap, prefix, plan, workdir) as instances:
        producing = threading.Thread(
            target=_recording(
                run, produce_inputs_in_transactions if plan.transactional_inputs else produce_inputs
            ),
            args=(bootstrap, topics[0], plan, run),
            daemon=True,
        )
        brokers = threading.Thread(
            target=_recording(run, broker_faults),
            args=(cluster, topics, plan, random.Random(rng.random()), run),
            daemon=True,
        )
        producing.start()
        brokers.start()
        kill_instances(instances, plan, random.Random(rng.random()), run)
        producing.join(plan.produce_seconds + 300)
        brokers.join(600)
        group = prefix + SERVICE_NAME
        run.caught_up = _wait(lambda: lag(bootstrap, group, topics[0]) == 0, plan.settle_seconds)
    run.unexpected_exits = instances.unexpected_exits
    run.stuck_exits = instances.stuck_exits
    # Read with read_committed only once no transaction is left open anywhere.
    run.open_transactions = wait_stable(bootstrap, topics, timeout=120)
    run.final_lag = lag(bootstrap, group, topics[0])
    run.tool_lag = tool_lag(bootstrap, group, topics[0])
    run.comparison = compare(
        read_inputs(bootstrap, topics[0]),
        read_outputs(bootstrap, topics[1]),
        read_letters(bootstrap, topics[2]),
        topics[0],
    )
    run.seconds = time.monotonic() - started
    return run


# --- the service instances ------------------------------------------------------------


class InstancePlan(Protocol):
    """What :class:`Instances` reads of a run's plan."""

    @property
    def guarantee(self) -> str: ...

    @property
    def commit_interval_seconds(self) -> float: ...


class Instances:
    """``count`` processes of ``pipeline run SERVICE`` in one group, killed and restarted:
    by default two of ``chaos_app:build_passthrough``. Instance ``i`` logs to
    ``<workdir>/<name>-<i>.log`` and runs as ``PIPELINE_INSTANCE_ID=<ids>-<i>``; ``env`` is
    added to the environment the harness gives them."""

    def __init__(
        self,
        bootstrap: str,
        prefix: str,
        plan: InstancePlan,
        workdir: Path,
        *,
        service: str = "chaos_app:build_passthrough",
        count: int = 2,
        name: str = "instance",
        ids: str = "chaos",
        env: Mapping[str, str] | None = None,
        static: bool = False,
    ) -> None:
        self.service, self.count, self.name, self.ids = service, count, name, ids
        self.static = static
        self.env = {
            **os.environ,
            "PYTHONPATH": f"{CHAOS_DIR}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
            "PIPELINE_BOOTSTRAP_SERVERS": bootstrap,
            "PIPELINE_TOPIC_PREFIX": prefix,
            "PIPELINE_METRICS_PORT": "0",
            "PIPELINE_MAX_RETRIES": "0",
            "PIPELINE_COMMIT_INTERVAL_SECONDS": str(plan.commit_interval_seconds),
            # A killed member's partitions move after the session timeout: keep it short.
            "PIPELINE_CONSUMER__SESSION_TIMEOUT_MS": "6000",
            "PIPELINE_CONSUMER__HEARTBEAT_INTERVAL_MS": "500",
        }
        if plan.guarantee != AT_LEAST_ONCE:
            self.env["PIPELINE_PROCESSING_GUARANTEE"] = plan.guarantee
        self.env.update(env or {})
        self.workdir = workdir
        self.processes: list[subprocess.Popen[bytes]] = []
        self.unexpected_exits = 0
        self.stuck_exits = 0
        self.stuck_seen = [0] * count
        self.exits: list[str] = []  # each exit the harness did not cause, with its status
        self.lock = threading.Lock()

    def log(self, index: int) -> Path:
        return self.workdir / f"{self.name}-{index}.log"

    def _start(self, index: int) -> subprocess.Popen[bytes]:
        # A stable id per instance: in exactly-once mode a restarted instance fences its
        # killed predecessor and aborts its open transaction at once. With ``static`` it
        # is the consumer's group.instance.id too (static membership): a restarted
        # instance takes its predecessor's place and partitions without waiting for the
        # session timeout.
        instance = {"PIPELINE_INSTANCE_ID": f"{self.ids}-{index}"}
        if self.static:
            instance["PIPELINE_CONSUMER__GROUP_INSTANCE_ID"] = f"{self.ids}-{index}"
        with self.log(index).open("ab") as out:
            return subprocess.Popen(
                [sys.executable, "-m", "pipeline", "run", self.service],
                env={**self.env, **instance},
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=REPO,
            )

    def __enter__(self) -> Instances:
        self.processes = [self._start(index) for index in range(self.count)]
        return self

    def sigkill_and_restart(self, index: int) -> None:
        with self.lock:
            self.check()
            process = self.processes[index]
            process.kill()
            process.wait(10)
            self.processes[index] = self._start(index)

    def sigterm_and_restart(self, index: int, timeout: float) -> None:
        """SIGTERM instance ``index``, wait for it to drain and exit, start it again. An
        exit other than 0 is counted (see :meth:`_count_exit`); one still running after
        ``timeout`` is SIGKILLed and counted as unexpected."""
        with self.lock:
            self.check()
            process = self.processes[index]
            process.send_signal(signal.SIGTERM)
            try:
                if process.wait(timeout) != 0:
                    self._count_exit(index)
            except subprocess.TimeoutExpired:
                self.unexpected_exits += 1
                self.exits.append(f"{self.name}-{index} still running {timeout:.0f}s after SIGTERM")
                process.kill()
                process.wait(10)
            self.processes[index] = self._start(index)

    def check(self) -> None:
        """Restart an instance that exited by itself, and count it."""
        for index, process in enumerate(self.processes):
            if process.poll() is not None:
                self._count_exit(index)
                self.processes[index] = self._start(index)

    def _count_exit(self, index: int) -> None:
        """An exit the harness did not cause: one on a Kafka call librdkafka never
        returned from (the runtime's deadline, by design: the supervisor restarts it) or
        any other (a problem)."""
        self.exits.append(f"{self.name}-{index} exited with {self.processes[index].returncode}")
        tail = self.log(index).read_text(errors="replace")[-4000:]
        if STUCK_EXIT in tail and tail.count(STUCK_EXIT) > self.stuck_seen[index]:
            self.stuck_seen[index] = tail.count(STUCK_EXIT)
            self.stuck_exits += 1
        else:
            self.unexpected_exits += 1

    def __exit__(self, *exc: object) -> None:
        with self.lock:
            self.check()
            for process in self.processes:
                process.send_signal(signal.SIGTERM)
            for index, process in enumerate(self.processes):
                try:
                    if process.wait(60) != 0:
                        self._count_exit(index)
                except subprocess.TimeoutExpired:
                    self.unexpected_exits += 1
                    self.exits.append(f"{self.name}-{index} still running 60s after SIGTERM")
                    process.kill()
                    process.wait(10)


def kill_instances(
    instances: Instances, plan: ChaosPlan, rng: random.Random, run: ChaosRun
) -> None:
    """SIGKILL an instance at ``service_kills`` random moments of the production window."""
    start = time.monotonic()
    moments = sorted(
        rng.uniform(0.1, 0.95) * plan.produce_seconds for _ in range(plan.service_kills)
    )
    for moment in moments:
        _sleep_until(start + moment)
        instances.sigkill_and_restart(rng.randrange(2))
        run.service_kills += 1
    # Keep an eye on the instances until the inputs are all produced.
    while time.monotonic() < start + plan.produce_seconds:
        with instances.lock:
            instances.check()
        time.sleep(0.5)


# --- the brokers ----------------------------------------------------------------------


def broker_faults(
    cluster: DevKafkaCluster,
    topics: list[str],
    plan: ChaosPlan,
    rng: random.Random,
    run: ChaosRun,
) -> None:
    """Take one broker down at a time, at random moments of the production window."""
    faults = ["kill"] * plan.broker_kills + ["restart"] * plan.clean_restarts
    faults += ["pause"] * plan.pauses + ["coordinator"] * plan.coordinator_kills
    rng.shuffle(faults)
    start = time.monotonic()
    slot = plan.produce_seconds / max(1, len(faults))
    for i, fault in enumerate(faults):
        _sleep_until(start + slot * i + rng.uniform(0, slot / 3))
        node = rng.randint(1, cluster.size)
        if fault == "coordinator":
            group = topics[0].removesuffix(INPUT) + SERVICE_NAME
            node = group_coordinator(cluster.bootstrap_servers, group) or node
            cluster.kill(node)
            time.sleep(2)
            cluster.start_node(node)
            run.broker_faults.append(f"node {node} (the group's coordinator) SIGKILLed, restarted")
        elif fault == "kill":
            cluster.kill(node)
            time.sleep(2)
            cluster.start_node(node)
            run.broker_faults.append(f"node {node} SIGKILLed and restarted")
        elif fault == "restart":
            cluster.node(node).stop()
            cluster.start_node(node)
            run.broker_faults.append(f"node {node} restarted cleanly")
        else:
            cluster.pause(node)
            time.sleep(plan.pause_seconds)
            cluster.resume(node)
            run.broker_faults.append(f"node {node} paused {plan.pause_seconds:.0f}s")
        wait_fully_replicated(cluster.bootstrap_servers, topics, timeout=120)


def group_coordinator(bootstrap: str, group: str) -> int | None:
    """The id of the node coordinating ``group`` now (None when it cannot be told)."""
    admin = AdminClient({"bootstrap.servers": bootstrap, **QUIET})
    try:
        description = admin.describe_consumer_groups([group], request_timeout=10)[group]
        return int(description.result(15).coordinator.id)
    except Exception:
        return None


def create_replicated_topics(bootstrap: str, names: list[str], partitions: int) -> None:
    """Topics at replication 3 with min.insync.replicas 2; waits until all are led."""
    admin = AdminClient({"bootstrap.servers": bootstrap, **QUIET})
    futures = admin.create_topics(
        [NewTopic(n, partitions, 3, config={"min.insync.replicas": "2"}) for n in names],
        operation_timeout=30,
    )
    for future in futures.values():
        future.result(timeout=60)
    if not wait_fully_replicated(bootstrap, names, timeout=60):
        raise RuntimeError(f"topics {names} were not fully replicated within 60s")


def wait_fully_replicated(bootstrap: str, topics: list[str], timeout: float) -> bool:
    """Wait until every partition of ``topics`` and of the group offsets has 3 in sync."""
    admin = AdminClient({"bootstrap.servers": bootstrap, **QUIET})

    def full() -> bool:
        try:
            meta = admin.list_topics(timeout=5).topics
        except Exception:
            return False
        # The group's offsets topic exists once the group has committed.
        names = [n for n in (*topics, "__consumer_offsets") if n in meta]
        return set(topics) <= set(names) and all(
            len(p.isrs) == 3 and p.leader >= 0 for n in names for p in meta[n].partitions.values()
        )

    return _wait(full, timeout)


# --- inputs ---------------------------------------------------------------------------


def produce_inputs(bootstrap: str, topic: str, plan: ChaosPlan, run: ChaosRun) -> None:
    """``plan.events`` inputs at an even rate over ``plan.produce_seconds``.

    (With bursts of 1, event j belongs to conversation ``j % conversations`` with
    sequence number ``j // conversations``.)
    """
    producer = Producer({**INPUT_PRODUCER, "bootstrap.servers": bootstrap})

    def delivered(err: KafkaError | None, _msg: Message) -> None:
        if err is not None:
            run.produce_errors.append(str(err))

    start = time.monotonic()
    for j, conversation, value in inputs(plan):
        _produce(producer, topic, conversation, value, delivered)
        if j % 50 == 0:
            _sleep_until(start + plan.produce_seconds * j / plan.events)
    if producer.flush(300) != 0:
        run.produce_errors.append("inputs still unacknowledged after 300s")


def produce_inputs_in_transactions(
    bootstrap: str, topic: str, plan: ChaosPlan, run: ChaosRun
) -> None:
    """The same inputs, in transactions of :data:`INPUT_TRANSACTION` records, as an
    exactly-once service upstream would write them: the topic then holds a transaction
    marker after each. A transaction the broker faults make abortable is aborted and its
    records written again in the next (the aborted ones are never read)."""
    producer = Producer(
        {
            **INPUT_PRODUCER,
            "bootstrap.servers": bootstrap,
            "transactional.id": f"{topic}-inputs",
            # At least message.timeout.ms, as librdkafka requires.
            "transaction.timeout.ms": INPUT_PRODUCER["message.timeout.ms"],
        }
    )
    producer.init_transactions(120)
    start = time.monotonic()
    pending = list(inputs(plan))
    while pending:
        batch, rest = pending[:INPUT_TRANSACTION], pending[INPUT_TRANSACTION:]
        producer.begin_transaction()
        for _, conversation, value in batch:
            _produce(producer, topic, conversation, value, None)
        if _commit_or_abort(producer):
            pending = rest
            _sleep_until(start + plan.produce_seconds * (plan.events - len(pending)) / plan.events)


def _commit_or_abort(producer: Producer) -> bool:
    """Commit the open transaction (trying again while that is retriable); False when it
    had to be aborted."""
    for _ in range(10):
        try:
            producer.commit_transaction(120)
            return True
        except KafkaException as exc:
            error = exc.args[0]
            if error.txn_requires_abort():
                producer.abort_transaction(120)
                return False
            if not error.retriable():
                raise
    raise RuntimeError("an input transaction could not be committed in 10 tries")


def inputs(plan: ChaosPlan) -> Iterator[tuple[int, str, bytes]]:
    """(index, conversation, encoded event) of every input, in the order produced.

    Inputs come in bursts of ``plan.burst`` consecutive events of one conversation, the
    conversations taking turns; 1% (``poison_ratio``) are poison, chosen by the seed.
    """
    rng = random.Random(plan.seed)
    poison = set(rng.sample(range(plan.events), round(plan.events * plan.poison_ratio)))
    for j in range(plan.events):
        block = j // plan.burst
        conversation = f"conv-{block % plan.conversations:04d}"
        seq = block // plan.conversations * plan.burst + j % plan.burst
        text = f"{POISON}{seq}" if j in poison else str(seq)
        yield j, conversation, SERDE.encode(_message(conversation, text))


def _produce(
    producer: Producer,
    topic: str,
    key: str,
    value: bytes,
    delivered: Callable[[KafkaError | None, Message], None] | None,
) -> None:
    while True:
        try:
            if delivered is None:
                producer.produce(topic, value, key=key)
            else:
                producer.produce(topic, value, key=key, on_delivery=delivered)
            break
        except BufferError:
            producer.poll(0.05)
    producer.poll(0)


def _message(conversation: str, text: str) -> Event:
    metadata = Metadata.new("message_received", conversation, tenant_id="t1", producer="chaos")
    return Event(
        metadata,
        {
            "channel": "web",
            "sender_id": f"user-{conversation}",
            "text": text,
            "reply_to": {"channel": "web", "address": "http://127.0.0.1/cb", "thread_id": None},
            "external_id": None,
        },
    )


# --- reading back ---------------------------------------------------------------------


def read_topic(bootstrap: str, topic: str, timeout: float = 120.0) -> Iterator[Message]:
    """Every record of ``topic`` (``read_committed``), partition by partition in offset
    order, up to each partition's last stable offset taken at the start (its high
    watermark unless a transaction is still open, which the run reports)."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "chaos-reader",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
            **QUIET,
        }
    )
    by_partition: dict[int, list[Message]] = {}
    try:
        stable = end_offsets(bootstrap, topic, stable=True)
        consumer.assign([TP(topic, p, OFFSET_BEGINNING) for p in stable])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for msg in consumer.consume(1000, 0.2):
                if msg.error() is None:
                    by_partition.setdefault(msg.partition() or 0, []).append(msg)
            positions = consumer.position([TP(topic, p) for p in stable])
            # (An empty partition has no position: nothing was read from it.)
            if all(
                tp.offset >= stable[tp.partition] or not stable[tp.partition] for tp in positions
            ):
                break
        else:
            raise TimeoutError(f"{topic} was not read to its end within {timeout:.0f}s")
    finally:
        consumer.close()
    for partition in sorted(by_partition):
        yield from by_partition[partition]


def read_inputs(bootstrap: str, topic: str) -> list[Input]:
    records = []
    for msg in read_topic(bootstrap, topic):
        event = SERDE.decode(msg.value() or b"")
        text = event["text"]
        seq = int(text.removeprefix(POISON))
        poison = text.startswith(POISON)
        partition, offset = msg.partition() or 0, msg.offset() or 0
        records.append(
            Input(event.conversation_id, seq, poison, partition, offset, msg.value() or b"")
        )
    # Inputs are judged per conversation, in the order produced (offset order).
    return records


def read_outputs(bootstrap: str, topic: str) -> list[Output]:
    records = []
    for msg in read_topic(bootstrap, topic):
        event = SERDE.decode(msg.value() or b"")
        partition, offset = msg.partition() or 0, msg.offset() or 0
        records.append(
            Output(event.conversation_id, int(event["text"]), str(event.id), partition, offset)
        )
    return records


def read_letters(bootstrap: str, topic: str) -> list[Letter]:
    letters = []
    for msg in read_topic(bootstrap, topic):
        _, record = SERDE.decode_record(msg.value() or b"")
        event_id = dict(msg.headers() or []).get(EVENT_ID, b"")
        letters.append(
            Letter(
                event_id.decode() if isinstance(event_id, bytes) else str(event_id),
                record["source_topic"],
                record["source_partition"],
                record["source_offset"],
                record["value"],
                dead_letter_id(
                    record["source_topic"],
                    record["source_partition"],
                    record["source_offset"],
                    record["stage"],
                    record["service"],
                ),
            )
        )
    return letters


def lag(bootstrap: str, group: str, topic: str) -> int:
    """The group's lag on ``topic`` by the Admin API: high watermarks minus committed
    offsets (-1: unknown, while a broker is down)."""
    try:
        return sum(group_lag(bootstrap, group, topic).values())
    except Exception:
        return -1


def tool_lag(bootstrap: str, group: str, topic: str) -> int:
    """The group's lag on ``topic`` as Kafka's consumer-groups tool prints it (-1: the tool
    failed or listed a partition without a committed offset)."""
    try:
        lags = kafka_tool_lag(bootstrap, group)
    except Exception:
        return -1
    values = [lag for (name, _), lag in lags.items() if name == topic]
    return -1 if not values or None in values else sum(v for v in values if v is not None)


def _recording(run: ChaosRun, target: Callable[..., None]) -> Callable[..., None]:
    """``target`` for a thread: an error it raises is kept in ``run.errors``."""

    def recorded(*args: object) -> None:
        try:
            target(*args)
        except Exception as exc:
            run.errors.append(f"{target.__name__}: {type(exc).__name__}: {exc}")

    return recorded


def start_cluster(data_dir: Path) -> DevKafkaCluster:
    """Three nodes on a free run of six ports of 127.0.0.1, 384 MB of heap each."""
    for _ in range(200):
        base = random.randrange(20000, 30000, 2)
        if not any(port_in_use(base + i) for i in range(6)):
            return DevKafkaCluster(
                3, base, data_dir=data_dir, heap_opts=HEAP, start_timeout=180.0
            ).start()
    raise RuntimeError("no run of six free ports on 127.0.0.1")


def _wait(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(1)
    return condition()


def _sleep_until(moment: float) -> None:
    with contextlib.suppress(ValueError):
        time.sleep(max(0.0, moment - time.monotonic()))
