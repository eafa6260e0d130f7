"""The command line of the local Kafka: ``python -m pipeline.dev.kafka start|stop|status|fetch``.

:func:`local_kafka` is what both command lines start (this one and ``pipeline kafka``):
one node, or a cluster of ``--brokers`` nodes.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from pipeline.dev.kafka.artifacts import KAFKA_VERSION, fetch
from pipeline.dev.kafka.broker import (
    DEFAULT_HEAP_OPTS,
    DEFAULT_PORT,
    DEFAULT_START_TIMEOUT,
    DevKafka,
)
from pipeline.dev.kafka.cluster import DevKafkaCluster
from pipeline.errors import DevKafkaError

__all__ = ["local_kafka", "main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline.dev.kafka", description="A local Apache Kafka without Docker."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("fetch", help="download the broker jars with Maven (cached)")
    for name, text in (
        ("start", "start the broker(s) and wait until they answer"),
        ("stop", "stop the broker(s)"),
        ("status", "say whether the broker(s) run (exit 3 when none does)"),
    ):
        p = sub.add_parser(name, help=text)
        p.add_argument("--port", type=int, default=DEFAULT_PORT)
        p.add_argument("--brokers", type=int, default=1, help="nodes in the cluster")
        p.add_argument("--data-dir", type=Path, default=None)
        if name == "start":
            p.add_argument("--controller-port", type=int, default=None)
            p.add_argument("--wipe", action="store_true", help="start from empty storage")
            p.add_argument("--keep-data", action="store_true", help=argparse.SUPPRESS)
            p.add_argument("--heap", default=" ".join(DEFAULT_HEAP_OPTS), help="JVM heap options")
            p.add_argument("--timeout", type=float, default=DEFAULT_START_TIMEOUT)
    return parser


def local_kafka(
    brokers: int,
    port: int,
    *,
    data_dir: Path | None = None,
    controller_port: int | None = None,
    wipe: bool = False,
    heap_opts: Sequence[str] = DEFAULT_HEAP_OPTS,
    start_timeout: float = DEFAULT_START_TIMEOUT,
) -> DevKafka | DevKafkaCluster:
    """What the command lines start: one node, or a cluster of ``brokers`` nodes. Both keep
    the data of their last run unless ``wipe``."""
    if brokers == 1:
        return DevKafka(
            port,
            controller_port=controller_port,
            data_dir=data_dir,
            keep_data=not wipe,
            heap_opts=heap_opts,
            start_timeout=start_timeout,
        )
    if controller_port is not None:
        raise DevKafkaError("--controller-port is for one broker; a cluster uses port + 1")
    return DevKafkaCluster(
        brokers,
        port,
        data_dir=data_dir,
        keep_data=not wipe,
        heap_opts=heap_opts,
        start_timeout=start_timeout,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m pipeline.dev.kafka``; returns the exit code."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "fetch":
            print(f"Kafka {KAFKA_VERSION} jars in {fetch()}")
            return 0
        if args.command == "start":
            broker = local_kafka(
                args.brokers,
                args.port,
                data_dir=args.data_dir,
                controller_port=args.controller_port,
                wipe=args.wipe,
                heap_opts=args.heap.split(),
                start_timeout=args.timeout,
            )
            broker.start()
            print(f"Kafka {KAFKA_VERSION} ready on {broker.bootstrap_servers} ({broker.data_dir})")
            return 0
        broker = local_kafka(args.brokers, args.port, data_dir=args.data_dir)
        if args.command == "stop":
            print("stopped" if broker.stop() else "not running")
            return 0
        print(broker.status())
        return 0 if broker.is_running() else 3
    except DevKafkaError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
