"""Several local KRaft nodes forming one cluster: :class:`DevKafkaCluster`.

Each node is a :class:`~pipeline.dev.kafka.broker.DevKafka` (broker and controller) in
one static quorum, for replication and for failure tests that take nodes down.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

from confluent_kafka.admin import AdminClient

from pipeline.dev.kafka.artifacts import KAFKA_VERSION, cache_root
from pipeline.dev.kafka.broker import (
    DEFAULT_HEAP_OPTS,
    DEFAULT_PORT,
    DEFAULT_START_TIMEOUT,
    DEFAULT_STOP_TIMEOUT,
    DevKafka,
)
from pipeline.dev.kafka.config import random_cluster_id
from pipeline.errors import DevKafkaError

__all__ = ["DevKafkaCluster"]


class DevKafkaCluster:
    """``size`` local KRaft nodes, each broker and controller, forming one cluster.

    Node ``i`` (1-based) listens on ``port + 2(i-1)`` and its controller on the port after
    it, so three nodes from 9092 take 9092-9097; files are in ``data_dir/node-<i>``
    (default ``<cache root>/cluster-<port>``). Internal topics are replicated to every
    node (at most 3) with ``min.insync.replicas`` 2 from three nodes on. ``kill``,
    ``pause`` and ``resume`` take a node down hard, freeze it and thaw it, for failure
    tests; ``start_node`` brings a stopped or killed node back with its data.
    """

    def __init__(
        self,
        size: int = 3,
        port: int = DEFAULT_PORT,
        *,
        data_dir: Path | None = None,
        keep_data: bool = False,
        heap_opts: Sequence[str] = DEFAULT_HEAP_OPTS,
        start_timeout: float = DEFAULT_START_TIMEOUT,
        stop_timeout: float = DEFAULT_STOP_TIMEOUT,
        kafka_version: str = KAFKA_VERSION,
    ) -> None:
        if size < 1:
            raise DevKafkaError(f"a cluster needs at least one node, not {size}")
        self.size = size
        self.port = port
        self.data_dir = data_dir if data_dir is not None else cache_root() / f"cluster-{port}"
        self.start_timeout = start_timeout
        ports = [(port + 2 * i, port + 2 * i + 1) for i in range(size)]
        voters = ",".join(f"{i + 1}@127.0.0.1:{c}" for i, (_, c) in enumerate(ports))
        cluster_id = self._cluster_id() if keep_data else random_cluster_id()
        self.nodes = [
            DevKafka(
                broker_port,
                controller_port=controller_port,
                data_dir=self.data_dir / f"node-{i + 1}",
                keep_data=keep_data,
                heap_opts=heap_opts,
                start_timeout=start_timeout,
                stop_timeout=stop_timeout,
                kafka_version=kafka_version,
                node_id=i + 1,
                voters=voters,
                cluster_id=cluster_id,
                replication_factor=min(size, 3),
            )
            for i, (broker_port, controller_port) in enumerate(ports)
        ]

    def _cluster_id(self) -> str:
        """The id the nodes were formatted with (kept data), else a new one."""
        meta = self.data_dir / "node-1" / "kraft" / "meta.properties"
        try:
            for line in meta.read_text(encoding="utf-8").splitlines():
                if line.startswith("cluster.id="):
                    return line.split("=", 1)[1].strip()
        except OSError:
            pass
        return random_cluster_id()

    @property
    def bootstrap_servers(self) -> str:
        return ",".join(node.bootstrap_servers for node in self.nodes)

    def node(self, node_id: int) -> DevKafka:
        return self.nodes[node_id - 1]

    def start(self) -> DevKafkaCluster:
        """Launch every node that is not running, then wait until all of them are in the
        cluster's metadata."""
        launched = []
        try:
            for node in self.nodes:
                if node.launch():
                    launched.append(node)
            self.wait_ready()
        except BaseException:
            for node in launched:
                node.stop()
            raise
        return self

    def start_node(self, node_id: int) -> None:
        """Start one node again (its data kept) and wait until the cluster lists it."""
        node = self.node(node_id)
        node.keep_data = True
        node.launch()
        self.wait_ready()

    def wait_ready(self, timeout: float | None = None) -> None:
        """Block until a metadata request lists every running node as a broker."""
        deadline = time.monotonic() + (self.start_timeout if timeout is None else timeout)
        while True:
            running = {n.node_id for n in self.nodes if n.is_running()}
            if not running:
                raise DevKafkaError(f"no node of the cluster runs.\n{self._logs()}")
            if self._brokers(timeout=2.0) >= running:
                return
            if time.monotonic() > deadline:
                raise DevKafkaError(
                    f"the cluster did not list nodes {sorted(running)} within "
                    f"{self.start_timeout:.0f}s.\n{self._logs()}"
                )
            time.sleep(0.2)

    def _brokers(self, timeout: float) -> set[int]:
        """The node ids the cluster's metadata lists (asked only of nodes that accept a
        connection, so librdkafka has no refused connections to log)."""
        servers = ",".join(n.bootstrap_servers for n in self.nodes if n.accepts())
        if not servers:
            return set()
        admin = AdminClient({"bootstrap.servers": servers})
        try:
            return set(admin.list_topics(timeout=timeout).brokers)
        except Exception:  # KafkaException on timeout: not yet
            return set()

    def stop(self) -> bool:
        """Stop every node; False if none was running."""
        stopped = [node.stop() for node in reversed(self.nodes)]
        return any(stopped)

    def kill(self, node_id: int) -> bool:
        """SIGKILL one node."""
        return self.node(node_id).kill()

    def pause(self, node_id: int) -> None:
        """SIGSTOP one node: it stops answering without closing its connections."""
        self._signal(node_id, signal.SIGSTOP)

    def resume(self, node_id: int) -> None:
        """SIGCONT a paused node."""
        self._signal(node_id, signal.SIGCONT)

    def _signal(self, node_id: int, sig: signal.Signals) -> None:
        pid = self.node(node_id).pid()
        if pid is None:
            raise DevKafkaError(f"node {node_id} does not run")
        os.kill(pid, sig)

    def status(self) -> str:
        return "\n".join(node.status() for node in self.nodes)

    def is_running(self) -> bool:
        return any(node.is_running() for node in self.nodes)

    def _logs(self) -> str:
        return "\n".join(node.logs() for node in self.nodes)

    def __enter__(self) -> DevKafkaCluster:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
