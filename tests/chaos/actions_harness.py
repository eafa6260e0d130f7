"""A chaos run of what the agent does: model calls and tool side effects under kills.

The agent (``pipeline run agent`` with the OpenAI provider pointed at
:class:`~tests.chaos.model_stand_in.ModelStandIn`) and the tools service
(:mod:`tests.chaos.actions_app`, with the MCP server :mod:`tests.chaos.mcp_refund_server`)
run one instance each, with stable instance ids, on a broker whose topics are the
project's own definitions (``topics/``) under a fresh prefix. Conversations each ask for
one refund, through one of three tools in turn (``refund_keyed``, ``refund_once``,
``refund_mcp``), produced at an even rate, while the agent, the tools service or both in
turn get SIGKILL (or SIGTERM) ``kills`` times and are restarted at once, as a supervisor
would. Each kill meets an instance at work: it waits, within bounds, until the instance
killed before is back (its group stable again without the members it had at that kill;
for the tools service, every refund tool advertised again), then for the target's next
action (a model request, a tool execution), and comes within half a second of it, while
that work is not yet committed. Once the groups have no lag left on ``message_received``,
``tool_called`` and ``tool_result`` the services are stopped with SIGTERM; once no
transaction is left open the topics are read (``read_committed``) and compared with the
model's request log and the tools' ledger (:mod:`tests.chaos.actions_check`).

The runs use one broker by default (``replication=1``): what is killed here is the
services, not brokers (broker faults are :mod:`tests.chaos.chaos_harness`'s subject), and
on a two-core machine three brokers' JVMs slow the services whose timing is measured.
``replication=None`` keeps the definitions' replication of 3 for a three-node cluster
(:func:`tests.chaos.chaos_harness.start_cluster`). Every wait is bounded.
"""

from __future__ import annotations

import contextlib
import json
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from confluent_kafka import ConsumerGroupState, KafkaError, Message, Producer
from confluent_kafka.admin import AdminClient

from pipeline.config import Settings
from pipeline.topology import admin_client, apply, load_settings_topology
from tests.chaos.actions_app import GUARANTEES, REFUND_TOOLS
from tests.chaos.actions_check import (
    AGENT,
    IN_FLIGHT_WINDOW_SECONDS,
    SIGKILL,
    SIGTERM,
    TOOLS,
    ActionsComparison,
    Asked,
    Kill,
    Reply,
    ToolCalled,
    ToolResult,
    compare,
)
from tests.chaos.chaos_check import AT_LEAST_ONCE
from tests.chaos.chaos_harness import (
    INPUT_PRODUCER,
    QUIET,
    REPO,
    SERDE,
    Instances,
    _message,
    _produce,
    _recording,
    _sleep_until,
    _wait,
    lag,
    read_topic,
)
from tests.chaos.model_stand_in import ModelStandIn, read_model_log, refund_request
from tests.chaos.side_effects import LATENCY_ENV, LEDGER_ENV, read_ledger
from tests.kafka_admin import wait_stable

BOTH = "agent and tools"  # the kills alternate between the two services
TOOLS_APP = "tests.chaos.actions_app:build_tools"
READ_BACK = ("message_received", "tool_called", "tool_result", "response_ready")
# Lags read in the direction events flow, so an event moving on between two reads is
# never missed: all zero means nothing is left in flight.
FLOW = ((AGENT, "message_received"), (TOOLS, "tool_called"), (AGENT, "tool_result"))


@dataclass(frozen=True)
class ActionsPlan:
    conversations: int = 300
    kills: int = 8
    target: str = AGENT  # AGENT, TOOLS or BOTH
    signal: str = SIGKILL  # or SIGTERM
    guarantee: str = AT_LEAST_ONCE
    produce_seconds: float = 120.0
    model_latency_seconds: float = 0.2
    tool_latency_seconds: float = 0.05
    commit_interval_seconds: float = 1.0
    in_flight_window_seconds: float = IN_FLIGHT_WINDOW_SECONDS
    replication: int | None = 1  # topics' replication factor (None: the definitions')
    static_membership: bool = False  # group.instance.id = the instance id
    back_at_work_seconds: float = 60.0  # bound on the wait for a killed instance's return
    drain_seconds: float = 30.0  # the services' drain deadline under SIGTERM
    settle_seconds: float = 180.0
    seed: int = 0


@dataclass
class ActionsRun:
    plan: ActionsPlan
    comparison: ActionsComparison = field(default_factory=ActionsComparison)
    inputs: int = 0
    kills: list[Kill] = field(default_factory=list)
    kills_unmet: int = 0  # kills that met an instance not back at work within the bound
    production_started: float = 0.0  # wall clock
    unexpected_exits: int = 0
    stuck_exits: int = 0
    exits: list[str] = field(default_factory=list)  # exits the harness did not cause
    open_transactions: dict[tuple[str, int], int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    produce_errors: list[str] = field(default_factory=list)
    caught_up: bool = False
    seconds: float = 0.0

    def problems(self) -> list[str]:
        """What broke durable actions, or the run itself."""
        found = self.comparison.problems(self.plan.guarantee, self.plan.signal)
        found.extend(self.run_problems())
        return found

    def run_problems(self) -> list[str]:
        """What makes the run's figures unreliable, whatever they say."""
        found = []
        if self.inputs != self.plan.conversations:
            found.append(f"inputs={self.inputs} of {self.plan.conversations}")
        if len(self.kills) != self.plan.kills:
            found.append(f"kills={len(self.kills)} of {self.plan.kills}")
        if self.unexpected_exits:
            found.append(f"unexpected_exits={self.unexpected_exits}")
        if not self.caught_up:
            found.append(f"not caught up within {self.plan.settle_seconds:.0f}s")
        if self.open_transactions:
            found.append(f"open_transactions={self.open_transactions}")
        found.extend(self.errors)
        if self.produce_errors:
            found.append(f"produce_errors={len(self.produce_errors)}")
        return found

    def report(self) -> str:
        p = self.plan
        lines = [
            f"actions chaos ({p.guarantee}, {p.signal} of {p.target}, seed {p.seed}): "
            f"{p.conversations} conversations of one tool-using turn in "
            f"{p.produce_seconds:.0f}s, model {p.model_latency_seconds * 1000:.0f} ms per "
            f"call, tools {p.tool_latency_seconds * 1000:.0f} ms, commit interval "
            f"{p.commit_interval_seconds}s; {self.seconds:.0f}s in all",
            f"kills: {len(self.kills)} at "
            f"{', '.join(f'{k.at - self.production_started:.0f}' for k in self.kills)} s "
            f"({self.kills_unmet} before the instance was back at work); inputs read back "
            f"{self.inputs}; unexpected exits "
            f"{self.unexpected_exits}; exits on a stuck Kafka call {self.stuck_exits}"
            f"{''.join(f'; {what}' for what in self.exits)}",
            *self.comparison.lines(),
            *self.comparison.examples,
        ]
        return "\n".join(lines)

    def row(self) -> list[str]:
        """The run as a row of the issue's table."""
        c = self.comparison
        return [
            self.plan.guarantee.replace("_", "-"),
            {AGENT: "agent", TOOLS: "tools"}.get(self.plan.target, "both"),
            self.plan.signal,
            f"{c.executions_beyond_one} ({c.beyond_one_under_new_call_id} under a new call "
            f"id; {c.repeated_effects} breaking the tool's guarantee)",
            f"{c.model.tool_step_repeats} / {c.model.final_step_repeats} (in flight at a "
            f"kill {c.model.tool_step_repeats_in_flight} / "
            f"{c.model.final_step_repeats_in_flight}; bound {c.model.in_flight_at_kills})",
            f"{c.replies.missing} / {c.replies.duplicates} ({c.replies.duplicates_with_another_id}"
            f" under another event id)",
        ]


def asked(plan: ActionsPlan) -> list[Asked]:
    """Conversation ``i`` asks for a refund of ``order-i`` through the refund tools in turn."""
    return [
        Asked(f"ac-{i:04d}", REFUND_TOOLS[i % len(REFUND_TOOLS)], f"order-{i:04d}")
        for i in range(plan.conversations)
    ]


def run_actions(bootstrap: str, plan: ActionsPlan, workdir: Path, prefix: str) -> ActionsRun:
    """One run against the broker(s) at ``bootstrap``, its topics named ``<prefix><type>``
    (deleted afterwards)."""
    started = time.monotonic()
    run = ActionsRun(plan)
    settings = Settings(
        bootstrap_servers=bootstrap, topic_prefix=prefix, topic_replication_factor=plan.replication
    )
    topology = load_settings_topology(settings)
    apply(admin_client(settings), topology, settings)
    try:
        _run(bootstrap, plan, workdir, prefix, run)
    finally:
        _delete_topics(bootstrap, [settings.topic(t.name) for t in topology])
    run.seconds = time.monotonic() - started
    return run


def _run(bootstrap: str, plan: ActionsPlan, workdir: Path, prefix: str, run: ActionsRun) -> None:
    ledger, model_log = workdir / "ledger.jsonl", workdir / "model.jsonl"
    wanted = asked(plan)
    with ModelStandIn(model_log, plan.model_latency_seconds) as model:
        env = service_environment(model.base_url, ledger, plan)
        services = {
            name: Instances(
                bootstrap,
                prefix,
                plan,
                workdir,
                service=service,
                count=1,
                name=name,
                ids=f"actions-{name}",
                env=env,
                static=plan.static_membership,
            )
            for name, service in ((AGENT, "agent"), (TOOLS, TOOLS_APP))
        }
        with services[TOOLS], services[AGENT]:
            if not wait_ready(bootstrap, prefix, timeout=120):
                run.errors.append("the services were not ready within 120s")
            else:
                producing = threading.Thread(
                    target=_recording(run, produce_requests),
                    args=(bootstrap, prefix + "message_received", plan, wanted, run),
                    daemon=True,
                )
                run.production_started = time.time()
                producing.start()
                activity = {
                    AGENT: lambda: model.latest_request,
                    TOOLS: lambda: ledger.stat().st_mtime if ledger.exists() else 0.0,
                }
                kill_services(
                    bootstrap, prefix, services, activity, plan, random.Random(plan.seed), run
                )
                producing.join(plan.produce_seconds + 120)
                run.caught_up = wait_quiescent(bootstrap, prefix, services, plan.settle_seconds)
        for instances in services.values():
            run.unexpected_exits += instances.unexpected_exits
            run.stuck_exits += instances.stuck_exits
            run.exits.extend(instances.exits)
    topics = [prefix + name for name in READ_BACK]
    run.open_transactions = wait_stable(bootstrap, topics, timeout=120)
    called, results, replies = read_actions(bootstrap, prefix)
    run.inputs = sum(1 for _ in read_topic(bootstrap, prefix + "message_received"))
    run.comparison = compare(
        wanted,
        read_model_log(model_log),
        read_ledger(ledger),
        called,
        results,
        replies,
        run.kills,
        GUARANTEES,
        window=plan.in_flight_window_seconds,
    )


def service_environment(model_url: str, ledger: Path, plan: ActionsPlan) -> dict[str, str]:
    """The settings both services run with: the stand-in model, the MCP refund server, the
    ledger; the handler's own retries as in production (the passthrough harness has none)."""
    latency = plan.tool_latency_seconds
    mcp = {
        "refunds": {
            "command": "python",
            "args": ["-m", "tests.chaos.mcp_refund_server", str(ledger), str(latency)],
            "cwd": str(REPO),
        }
    }
    return {
        "PIPELINE_LLM__PROVIDER": "openai",
        "PIPELINE_LLM__BASE_URL": model_url,
        "PIPELINE_LLM__MODEL": "stand-in",
        "PIPELINE_LLM__API_KEY": "stand-in-key",
        # The stand-in listens on 127.0.0.1, which the egress policy refuses unless named.
        "PIPELINE_LLM__ALLOWED_NETWORKS": '["127.0.0.0/8"]',
        "PIPELINE_TOOLS__MCP_SERVERS": json.dumps(mcp),
        "PIPELINE_MAX_RETRIES": "3",
        "PIPELINE_DRAIN_TIMEOUT_SECONDS": str(plan.drain_seconds),
        LEDGER_ENV: str(ledger),
        LATENCY_ENV: str(plan.tool_latency_seconds),
    }


# --- the kills ------------------------------------------------------------------------


def kill_services(
    bootstrap: str,
    prefix: str,
    services: dict[str, Instances],
    activity: dict[str, Callable[[], float]],
    plan: ActionsPlan,
    rng: random.Random,
    run: ActionsRun,
) -> None:
    """``plan.kills`` kills, one at a random moment of each equal slot of the production
    window, each meeting an instance at work: it waits until the instance it targets is
    back after its last kill (within ``plan.back_at_work_seconds``), then for the target's
    next action (``activity``: when it last called the model, or ran a tool; at most
    ``slot`` seconds), and comes within half a second of it, while that work is not yet
    committed, as a crash under load would."""
    start = time.monotonic()
    slot = plan.produce_seconds / max(1, plan.kills)
    previous: dict[str, set[str]] = {}
    for i in range(plan.kills):
        target = plan.target if plan.target != BOTH else (AGENT, TOOLS)[i % 2]
        group = prefix + target
        _sleep_until(start + slot * (i + rng.uniform(0.1, 0.9)))
        if target in previous:
            gone = previous[target]
            back = _wait(
                lambda t=target, b=gone: back_at_work(bootstrap, prefix, t, b),
                plan.back_at_work_seconds,
            )
            run.kills_unmet += not back
        since = time.time()
        _wait_briefly(lambda t=target, s=since: activity[t]() > s, slot)
        time.sleep(rng.uniform(0.0, 0.5))
        previous[target] = members(bootstrap, group)
        run.kills.append(Kill(target, plan.signal, time.time()))
        if plan.signal == SIGTERM:
            services[target].sigterm_and_restart(0, plan.drain_seconds + 30)
        else:
            services[target].sigkill_and_restart(0)
    while time.monotonic() < start + plan.produce_seconds:
        for instances in services.values():
            with instances.lock:
                instances.check()
        time.sleep(0.5)


def _wait_briefly(condition: Callable[[], bool], timeout: float) -> bool:
    """Poll ``condition`` every 20 ms for at most ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def back_at_work(bootstrap: str, prefix: str, target: str, before: set[str]) -> bool:
    """Whether ``target`` holds its partitions again, under none of the member ids it had
    at its last kill; for the tools service, also with every refund tool advertised again
    (its MCP server connected: the catalog withdraws an MCP tool while it is not)."""
    if target == TOOLS and not set(REFUND_TOOLS) <= advertised(bootstrap, prefix + "tool_catalog"):
        return False
    return at_work(bootstrap, prefix + target, before)


def members(bootstrap: str, group: str) -> set[str]:
    """The member ids of ``group`` now (empty when it cannot be told)."""
    admin = AdminClient({"bootstrap.servers": bootstrap, **QUIET})
    try:
        description = admin.describe_consumer_groups([group], request_timeout=10)[group]
        return {m.member_id for m in description.result(15).members}
    except Exception:
        return set()


def at_work(bootstrap: str, group: str, before: set[str]) -> bool:
    """Whether ``group`` is stable with members holding partitions, none of ``before``."""
    admin = AdminClient({"bootstrap.servers": bootstrap, **QUIET})
    try:
        description = admin.describe_consumer_groups([group], request_timeout=10)[group]
        found = description.result(15)
    except Exception:
        return False
    ids = {m.member_id for m in found.members}
    return (
        found.state == ConsumerGroupState.STABLE
        and bool(ids)
        and not ids & before
        and all(m.assignment.topic_partitions for m in found.members)
    )


def wait_ready(bootstrap: str, prefix: str, timeout: float) -> bool:
    """Wait until the catalog advertises the refund tools and both services hold their
    partitions."""

    def ready() -> bool:
        return (
            set(REFUND_TOOLS) <= advertised(bootstrap, prefix + "tool_catalog")
            and at_work(bootstrap, prefix + AGENT, set())
            and at_work(bootstrap, prefix + TOOLS, set())
        )

    return _wait(ready, timeout)


def advertised(bootstrap: str, catalog: str) -> set[str]:
    """The tool names the catalog topic advertises now (a tombstone withdraws one)."""
    names: set[str] = set()
    with contextlib.suppress(Exception):
        for msg in read_topic(bootstrap, catalog, timeout=10):
            key = (msg.key() or b"").decode()
            if msg.value() is None:
                names.discard(key)
            else:
                names.add(key)
    return names


def wait_quiescent(
    bootstrap: str, prefix: str, services: dict[str, Instances], timeout: float
) -> bool:
    """Wait until no lag is left along the flow, twice in a row a second apart, restarting
    an instance that exited by itself meanwhile."""

    def idle() -> bool:
        for instances in services.values():
            with instances.lock:
                instances.check()
        return all(lag(bootstrap, prefix + service, prefix + topic) == 0 for service, topic in FLOW)

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if idle():
            time.sleep(1)
            if idle():
                return True
        time.sleep(1)
    return False


# --- inputs and reading back ----------------------------------------------------------


def produce_requests(
    bootstrap: str, topic: str, plan: ActionsPlan, wanted: list[Asked], run: ActionsRun
) -> None:
    """One refund request per conversation, at an even rate over ``plan.produce_seconds``."""
    producer = Producer({**INPUT_PRODUCER, "bootstrap.servers": bootstrap})

    def delivered(err: KafkaError | None, _msg: Message) -> None:
        if err is not None:
            run.produce_errors.append(str(err))

    start = time.monotonic()
    for i, request in enumerate(wanted):
        _sleep_until(start + plan.produce_seconds * i / len(wanted))
        text = refund_request(request.conversation, request.order_id, request.tool)
        value = SERDE.encode(_message(request.conversation, text))
        _produce(producer, topic, request.conversation, value, delivered)
    if producer.flush(120) != 0:
        run.produce_errors.append("requests still unacknowledged after 120s")


def read_actions(
    bootstrap: str, prefix: str
) -> tuple[list[ToolCalled], list[ToolResult], list[Reply]]:
    """``tool_called``, ``tool_result`` and ``response_ready`` in full (``read_committed``)."""
    called, results, replies = [], [], []
    for msg in read_topic(bootstrap, prefix + "tool_called"):
        event = SERDE.decode(msg.value() or b"")
        called.append(
            ToolCalled(event.conversation_id, event["call_id"], event["tool"], str(event.id))
        )
    for msg in read_topic(bootstrap, prefix + "tool_result"):
        event = SERDE.decode(msg.value() or b"")
        results.append(
            ToolResult(
                event.conversation_id,
                event["call_id"],
                event["tool"],
                str(event["status"]),
                event.get("error"),
                str(event.id),
            )
        )
    for msg in read_topic(bootstrap, prefix + "response_ready"):
        event = SERDE.decode(msg.value() or b"")
        replies.append(Reply(event.conversation_id, event["text"], str(event.id)))
    return called, results, replies


def _delete_topics(bootstrap: str, topics: list[str]) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap, **QUIET})
    for future in admin.delete_topics(topics, operation_timeout=30).values():
        with contextlib.suppress(Exception):
            future.result(timeout=60)
