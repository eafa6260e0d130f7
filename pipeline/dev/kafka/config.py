"""What a node runs with: ``server.properties``, the log4j2 file, the cluster id and
the ``java`` command lines of the storage format step and of the broker.

None of them writes a file or starts a process: they return text or argument lists.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Sequence
from pathlib import Path

__all__ = [
    "broker_command",
    "format_command",
    "java_command",
    "random_cluster_id",
    "render_log4j2",
    "render_server_properties",
]

_JVM_OPTS = (
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=20",
    "-XX:+ExplicitGCInvokesConcurrent",
    "-Djava.awt.headless=true",
)


def render_server_properties(
    port: int,
    controller_port: int,
    log_dir: Path,
    *,
    node_id: int = 1,
    voters: str | None = None,
    replication_factor: int = 1,
) -> str:
    """server.properties for one KRaft node that is both broker and controller.

    ``voters`` is the whole quorum (``1@host:port,2@host:port,...``; default: this node
    alone). ``replication_factor`` sets the internal topics' replication and the defaults
    for new topics; with 3 or more nodes, ``min.insync.replicas`` is 2, as in production.
    """
    min_isr = "2" if replication_factor >= 3 else "1"
    rf = str(replication_factor)
    props = {
        "process.roles": "broker,controller",
        "node.id": str(node_id),
        "controller.quorum.voters": voters or f"{node_id}@127.0.0.1:{controller_port}",
        "listeners": f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "log.dirs": str(log_dir),
        "num.partitions": "1",
        "default.replication.factor": rf,
        "min.insync.replicas": min_isr,
        "offsets.topic.replication.factor": rf,
        "offsets.topic.num.partitions": "4",
        "transaction.state.log.replication.factor": rf,
        "transaction.state.log.min.isr": min_isr,
        "transaction.state.log.num.partitions": "4",
        "share.coordinator.state.topic.replication.factor": rf,
        "share.coordinator.state.topic.min.isr": min_isr,
        "group.initial.rebalance.delay.ms": "0",
        "auto.create.topics.enable": "false",
        "delete.topic.enable": "true",
    }
    if replication_factor > 1:
        # A restarted node takes leadership back, so a test's cluster returns to its shape;
        # a frozen node leaves the ISR after 10 s (default 30 s), so acks=all writes wait
        # that long at most.
        props["leader.imbalance.check.interval.seconds"] = "10"
        props["replica.lag.time.max.ms"] = "10000"
    lines = ["# Written by pipeline.dev.kafka; regenerated on every start."]
    lines += [f"{key}={value}" for key, value in props.items()]
    return "\n".join(lines) + "\n"


def render_log4j2(log_file: Path) -> str:
    """A log4j2 configuration (properties format) that writes everything to one file."""
    return f"""status = warn
name = devkafka
appender.file.type = File
appender.file.name = FILE
appender.file.fileName = {log_file}
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = FILE
logger.state.name = state.change.logger
logger.state.level = WARN
"""


def random_cluster_id() -> str:
    """A Kafka cluster id: 16 random bytes, URL-safe base64 without padding.

    Same as ``kafka.tools.StorageTool random-uuid``, without starting a JVM.
    """
    while True:
        raw = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode("ascii")
        if not raw.startswith("-"):  # Kafka rejects ids that look like a flag
            return raw


def java_command(
    java: str, libs: Path, log4j_config: Path, heap_opts: Sequence[str], main_class: str
) -> list[str]:
    """The common ``java`` prefix: heap, log config and the broker classpath."""
    return [
        java,
        *heap_opts,
        *_JVM_OPTS,
        f"-Dlog4j2.configurationFile={log4j_config}",
        "-cp",
        f"{libs}/*",  # expanded by the JVM, not a shell
        main_class,
    ]


def format_command(
    java: str,
    libs: Path,
    log4j_config: Path,
    cluster_id: str,
    server_properties: Path,
    *,
    ignore_formatted: bool = False,
) -> list[str]:
    """``kafka.tools.StorageTool format`` for the static-quorum configuration."""
    cmd = java_command(java, libs, log4j_config, ("-Xmx256m",), "kafka.tools.StorageTool")
    cmd += ["format", "-t", cluster_id, "-c", str(server_properties)]
    if ignore_formatted:
        cmd.append("--ignore-formatted")
    return cmd


def broker_command(
    java: str, libs: Path, log4j_config: Path, heap_opts: Sequence[str], server_properties: Path
) -> list[str]:
    """``kafka.Kafka server.properties``."""
    return [
        *java_command(java, libs, log4j_config, heap_opts, "kafka.Kafka"),
        str(server_properties),
    ]
