"""One local KRaft node, broker and controller at once: :class:`DevKafka`.

It writes its configuration (:mod:`.config`), fetches the jars (:mod:`.artifacts`),
formats its storage, runs the JVM (:mod:`.process`) and waits until the broker answers
a metadata request.

    with DevKafka(port=19092) as broker:
        producer = Producer({"bootstrap.servers": broker.bootstrap_servers})
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

from confluent_kafka.admin import AdminClient

from pipeline.dev.kafka.artifacts import KAFKA_VERSION, cache_root, fetch, find_tool
from pipeline.dev.kafka.config import (
    broker_command,
    format_command,
    random_cluster_id,
    render_log4j2,
    render_server_properties,
)
from pipeline.dev.kafka.process import BrokerProcess, port_in_use, tail
from pipeline.errors import DevKafkaError

__all__ = [
    "DEFAULT_HEAP_OPTS",
    "DEFAULT_PORT",
    "DEFAULT_START_TIMEOUT",
    "DEFAULT_STOP_TIMEOUT",
    "DevKafka",
]

DEFAULT_PORT = 9092
DEFAULT_HEAP_OPTS = ("-Xmx1g",)
DEFAULT_START_TIMEOUT = 60.0
DEFAULT_STOP_TIMEOUT = 30.0


class DevKafka:
    """One local broker+controller on 127.0.0.1:``port``, run from the cached jars.

    Files live in ``data_dir`` (default ``<cache root>/run-<port>``): ``server.properties``,
    ``log4j2.properties``, ``broker.log`` (log4j), ``broker.out`` (stdout/stderr),
    ``format.log`` (the storage format step),
    ``broker.pid`` and the KRaft log directory ``kraft``. The KRaft data is wiped at every
    start unless ``keep_data`` is set.
    """

    def __init__(
        self,
        port: int = DEFAULT_PORT,
        *,
        controller_port: int | None = None,
        data_dir: Path | None = None,
        keep_data: bool = False,
        heap_opts: Sequence[str] = DEFAULT_HEAP_OPTS,
        start_timeout: float = DEFAULT_START_TIMEOUT,
        stop_timeout: float = DEFAULT_STOP_TIMEOUT,
        kafka_version: str = KAFKA_VERSION,
        node_id: int = 1,
        voters: str | None = None,
        cluster_id: str | None = None,
        replication_factor: int = 1,
    ) -> None:
        """``node_id``, ``voters``, ``cluster_id`` and ``replication_factor`` make this one
        node of a cluster (see :class:`DevKafkaCluster`); the defaults make a lone node."""
        self.port = port
        self.controller_port = controller_port if controller_port is not None else port + 1
        self.data_dir = data_dir if data_dir is not None else cache_root() / f"run-{port}"
        self.keep_data = keep_data
        self.heap_opts = tuple(heap_opts)
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self.kafka_version = kafka_version
        self.node_id = node_id
        self.voters = voters
        self.cluster_id = cluster_id
        self.replication_factor = replication_factor
        self._process = BrokerProcess(self.pid_file, self.server_properties)

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pid_file(self) -> Path:
        return self.data_dir / "broker.pid"

    @property
    def log_file(self) -> Path:
        return self.data_dir / "broker.log"

    @property
    def out_file(self) -> Path:
        return self.data_dir / "broker.out"

    @property
    def server_properties(self) -> Path:
        return self.data_dir / "server.properties"

    @property
    def log4j_config(self) -> Path:
        return self.data_dir / "log4j2.properties"

    @property
    def kraft_dir(self) -> Path:
        return self.data_dir / "kraft"

    def pid(self) -> int | None:
        """The pid of this broker when it is running, else None."""
        return self._process.pid()

    def is_running(self) -> bool:
        return self._process.is_running()

    def accepts(self, timeout: float = 2.0) -> bool:
        """True when the broker port accepts a TCP connection."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=timeout):
                return True
        except OSError:
            return False

    def answers(self, timeout: float = 2.0) -> bool:
        """True when a Kafka metadata request to the broker succeeds within ``timeout``."""
        if not self.accepts(timeout):
            return False
        admin = AdminClient({"bootstrap.servers": self.bootstrap_servers})
        try:
            return bool(admin.list_topics(timeout=timeout).brokers)
        except Exception:  # KafkaException on timeout; anything else means "not yet"
            return False

    def start(self) -> DevKafka:
        """Fetch if needed, format storage, launch the broker and wait until it answers.

        Starting a broker that already runs from this ``data_dir`` is a no-op.
        """
        if self.launch():
            try:
                self.wait_ready()
            except BaseException:
                self.stop()
                raise
        else:
            self.wait_ready()
        return self

    def launch(self) -> bool:
        """Format storage if needed and start the JVM without waiting for it to answer.

        False when a broker already runs from this ``data_dir`` (nothing was started).
        The nodes of a cluster are launched together: none answers before a quorum runs.
        """
        if self.is_running():
            return False
        for p in (self.port, self.controller_port):
            if port_in_use(p):
                raise DevKafkaError(
                    f"port {p} on 127.0.0.1 is in use; stop what holds it or pick --port"
                )
        libs = fetch(self.kafka_version)
        java = find_tool("java", "JAVA_HOME")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if not self.keep_data:
            shutil.rmtree(self.kraft_dir, ignore_errors=True)
            for f in (self.log_file, self.out_file, self.data_dir / "format.log"):
                f.unlink(missing_ok=True)
        self.server_properties.write_text(
            render_server_properties(
                self.port,
                self.controller_port,
                self.kraft_dir,
                node_id=self.node_id,
                voters=self.voters,
                replication_factor=self.replication_factor,
            ),
            encoding="utf-8",
        )
        self.log4j_config.write_text(render_log4j2(self.log_file), encoding="utf-8")
        if not (self.keep_data and (self.kraft_dir / "meta.properties").is_file()):
            self._format(java, libs)
        cmd = broker_command(java, libs, self.log4j_config, self.heap_opts, self.server_properties)
        self._process.spawn(cmd, self.out_file, cwd=self.data_dir)
        return True

    def kill(self) -> bool:
        """SIGKILL the broker (a crash, for failure tests); False if it was not running."""
        return self._process.kill()

    def _format(self, java: str, libs: Path) -> None:
        """Format a fresh KRaft log directory with a new cluster id."""
        log4j_config = self.data_dir / "log4j2-format.properties"
        log4j_config.write_text(render_log4j2(self.data_dir / "format.log"), encoding="utf-8")
        cluster_id = self.cluster_id or random_cluster_id()
        fmt = format_command(java, libs, log4j_config, cluster_id, self.server_properties)
        result = subprocess.run(fmt, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise DevKafkaError(
                f"formatting KRaft storage failed (exit {result.returncode}):\n"
                f"{result.stdout}{result.stderr}"
            )

    def wait_ready(self, timeout: float | None = None) -> None:
        """Block until the broker answers a metadata request; raise with its log on failure."""
        deadline = time.monotonic() + (self.start_timeout if timeout is None else timeout)
        while time.monotonic() < deadline:
            if not self._process.alive():
                code = self._process.exit_code()
                raise DevKafkaError(
                    f"the broker exited during start-up (exit code {code}).\n{self.logs()}"
                )
            if self.answers(timeout=min(2.0, max(0.1, deadline - time.monotonic()))):
                return
            time.sleep(0.2)
        raise DevKafkaError(
            f"the broker did not answer on {self.bootstrap_servers} within "
            f"{self.start_timeout:.0f}s.\n{self.logs()}"
        )

    def stop(self) -> bool:
        """SIGTERM the broker, SIGKILL it after ``stop_timeout``; False if it was not running."""
        return self._process.stop(self.stop_timeout)

    def status(self) -> str:
        """One line saying whether the broker runs and answers."""
        pid = self.pid()
        if pid is None:
            return f"Kafka on {self.bootstrap_servers}: not running"
        state = "answering" if self.answers() else "not answering"
        return (
            f"Kafka on {self.bootstrap_servers}: running (pid {pid}), {state}; log {self.log_file}"
        )

    def logs(self) -> str:
        """The last lines of the broker's output and log, for an error message."""
        parts = []
        for f in (self.out_file, self.log_file):
            text = tail(f)
            if text:
                parts.append(f"--- last lines of {f} ---\n{text}")
        return "\n".join(parts) or f"(no output in {self.data_dir})"

    def __enter__(self) -> DevKafka:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
