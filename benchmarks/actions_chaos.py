"""Durable actions, long form: the harness of ``tests/chaos/actions_harness.py`` at full
size, run by hand, printing the table of the issue "Durable agent actions".

Starts its own single broker on free ports of 127.0.0.1 (``--cluster``: the three-node
cluster of the broker-fault chaos runs, topics at replication 3; ``--bootstrap``: a running
broker), then runs each case: the agent (stand-in model, 200 ms per call) and the tools
service (keyed, at-most-once and MCP refund tools), 300 conversations of one tool-using
turn each produced over 150 s, the agent or the tools service SIGKILLed (or SIGTERMed) 8
times at random moments and restarted at once. Instances keep stable ids; group membership
is dynamic as in the Helm chart (``--static-membership`` gives each instance its id as
``group.instance.id``). Prints each run's figures, then the table; exit status 1 when a
case broke the acceptance (on the code before the actions journal, that is expected).

    python benchmarks/actions_chaos.py [--conversations 300] [--kills 8]
        [--cases alo-tools-kill,alo-agent-kill,eo-tools-kill,eo-agent-kill,alo-agent-term]
        [--produce-seconds 150] [--model-latency 0.2] [--seed N]
        [--cluster | --bootstrap HOST:PORT]
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

# The harness is the chaos tests' own: import it from the checkout's tests package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.dev.kafka import DevKafka, free_port
from tests.chaos.actions_check import AGENT, SIGKILL, SIGTERM, TOOLS
from tests.chaos.actions_harness import BOTH, ActionsPlan, ActionsRun, run_actions
from tests.chaos.chaos_check import AT_LEAST_ONCE, EXACTLY_ONCE
from tests.chaos.chaos_harness import start_cluster

# The table, row by row: (mode, killed, signal).
CASES = {
    "alo-tools-kill": (AT_LEAST_ONCE, TOOLS, SIGKILL),
    "alo-agent-kill": (AT_LEAST_ONCE, AGENT, SIGKILL),
    "eo-tools-kill": (EXACTLY_ONCE, TOOLS, SIGKILL),
    "eo-agent-kill": (EXACTLY_ONCE, AGENT, SIGKILL),
    "alo-agent-term": (AT_LEAST_ONCE, AGENT, SIGTERM),
    "alo-tools-term": (AT_LEAST_ONCE, TOOLS, SIGTERM),
    "alo-both-term": (AT_LEAST_ONCE, BOTH, SIGTERM),
}
TABLE_CASES = "alo-tools-kill,alo-agent-kill,eo-tools-kill,eo-agent-kill,alo-agent-term"
HEADER = [
    "mode",
    "killed",
    "signal",
    "tool executions beyond one per call",
    "model calls repeated (tool step / final step)",
    "replies missing / duplicated",
]


@contextlib.contextmanager
def broker(args: argparse.Namespace, work: Path) -> Iterator[tuple[str, int | None]]:
    """(bootstrap servers, the topics' replication factor override) of the broker(s) used."""
    if args.bootstrap:
        yield args.bootstrap, args.replication
    elif args.cluster:
        cluster = start_cluster(work / "cluster")
        try:
            yield cluster.bootstrap_servers, None
        finally:
            cluster.stop()
    else:
        with DevKafka(free_port(), controller_port=free_port(), data_dir=work / "kafka") as kafka:
            yield kafka.bootstrap_servers, 1


def table(runs: list[ActionsRun]) -> str:
    rows = [HEADER, *(run.row() for run in runs)]
    lines = ["| " + " | ".join(row) + " |" for row in rows]
    lines.insert(1, "|" + "---|" * len(HEADER))
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--conversations", type=int, default=300)
    parser.add_argument("--kills", type=int, default=8)
    parser.add_argument("--cases", default=TABLE_CASES, help=f"of {', '.join(CASES)}")
    parser.add_argument("--produce-seconds", type=float, default=150.0)
    parser.add_argument("--model-latency", type=float, default=0.2)
    parser.add_argument("--tool-latency", type=float, default=0.05)
    parser.add_argument("--commit-interval", type=float, default=1.0)
    parser.add_argument("--window", type=float, default=1.0, help="in-flight window, seconds")
    parser.add_argument("--static-membership", action="store_true")
    parser.add_argument("--seed", type=int, default=1)
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--cluster", action="store_true", help="three local brokers")
    where.add_argument("--bootstrap", help="a running broker instead of starting one")
    parser.add_argument("--replication", type=int, default=1, help="with --bootstrap")
    args = parser.parse_args()
    cases = args.cases.split(",")
    unknown = sorted(set(cases) - CASES.keys())
    if unknown:
        parser.error(f"unknown cases {unknown}; known: {', '.join(CASES)}")
    base = ActionsPlan(
        conversations=args.conversations,
        kills=args.kills,
        produce_seconds=args.produce_seconds,
        model_latency_seconds=args.model_latency,
        tool_latency_seconds=args.tool_latency,
        commit_interval_seconds=args.commit_interval,
        in_flight_window_seconds=args.window,
        static_membership=args.static_membership,
        settle_seconds=300.0,
        seed=args.seed,
    )
    runs: list[ActionsRun] = []
    with tempfile.TemporaryDirectory(prefix="actions-chaos-") as tmp:
        work = Path(tmp)
        with broker(args, work) as (bootstrap, replication):
            print(f"broker(s) at {bootstrap}; logs in {work}", flush=True)
            for case in cases:
                guarantee, target, signal = CASES[case]
                plan = dataclasses.replace(
                    base, guarantee=guarantee, target=target, signal=signal, replication=replication
                )
                folder = work / case
                folder.mkdir()
                run = run_actions(bootstrap, plan, folder, f"actions-{uuid.uuid4().hex[:8]}.")
                runs.append(run)
                print(f"\n{run.report()}", flush=True)
                broken = run.problems()
                print(f"NOT KEPT: {', '.join(broken)}" if broken else "kept", flush=True)
    print(f"\n{args.conversations} conversations, {args.kills} kills per run\n")
    print(table(runs))
    return 1 if any(run.problems() for run in runs) else 0


if __name__ == "__main__":
    sys.exit(main())
