"""Chaos, long form: the harness of ``tests/chaos`` at full size, run by hand.

Starts its own three-broker cluster on free ports of 127.0.0.1 (384 MB of heap per node),
runs two instances of the pass-through service while the inputs are produced and
instances and brokers are taken down, compares inputs with outputs, prints the figures
and stops the cluster. Exit status 1 when the guarantee was not kept.

    python benchmarks/chaos.py [--events 100000] [--service-kills 20] [--broker-kills 1]
                               [--coordinator-kills 1] [--clean-restarts 1]
                               [--guarantee at_least_once|exactly_once] [--seed N]

In exactly-once mode the inputs are written in transactions (``--plain-inputs`` writes them
without), as an exactly-once service upstream would write them.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import uuid
from pathlib import Path

# The harness is the chaos tests' own: import it from the checkout's tests package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.chaos.chaos_check import AT_LEAST_ONCE, EXACTLY_ONCE
from tests.chaos.chaos_harness import ChaosPlan, run_chaos, start_cluster


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--conversations", type=int, default=1_000)
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--service-kills", type=int, default=20)
    parser.add_argument("--broker-kills", type=int, default=1)
    parser.add_argument("--coordinator-kills", type=int, default=1)
    parser.add_argument("--clean-restarts", type=int, default=1)
    parser.add_argument("--pauses", type=int, default=1)
    parser.add_argument("--pause-seconds", type=float, default=5.0)
    parser.add_argument("--poison-ratio", type=float, default=0.01)
    parser.add_argument("--produce-seconds", type=float, default=200.0)
    parser.add_argument("--commit-interval", type=float, default=1.0)
    parser.add_argument("--guarantee", choices=[AT_LEAST_ONCE, EXACTLY_ONCE], default=AT_LEAST_ONCE)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--plain-inputs", action="store_true")
    args = parser.parse_args()
    plan = ChaosPlan(
        events=args.events,
        conversations=args.conversations,
        partitions=args.partitions,
        service_kills=args.service_kills,
        broker_kills=args.broker_kills,
        coordinator_kills=args.coordinator_kills,
        clean_restarts=args.clean_restarts,
        pauses=args.pauses,
        pause_seconds=args.pause_seconds,
        poison_ratio=args.poison_ratio,
        produce_seconds=args.produce_seconds,
        guarantee=args.guarantee,
        transactional_inputs=args.guarantee == EXACTLY_ONCE and not args.plain_inputs,
        commit_interval_seconds=args.commit_interval,
        settle_seconds=300.0,
        seed=args.seed,
    )
    with tempfile.TemporaryDirectory(prefix="chaos-") as tmp:
        work = Path(tmp)
        cluster = start_cluster(work / "cluster")
        print(f"cluster on {cluster.bootstrap_servers}; logs in {work}", flush=True)
        try:
            run = run_chaos(cluster, plan, work, f"chaos-{uuid.uuid4().hex[:8]}.")
        finally:
            cluster.stop()
        print(run.report())
        problems = run.problems()
        if problems:
            print(f"NOT KEPT: {', '.join(problems)}")
            for log in sorted(work.glob("instance-*.log")):
                print(f"--- {log.name} ---\n{log.read_text()[-3000:]}")
            return 1
        print(f"kept: {args.guarantee}")
        return 0


if __name__ == "__main__":
    sys.exit(main())
