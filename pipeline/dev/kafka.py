"""A local single-node Apache Kafka for development and tests, without Docker.

The official broker jars are fetched once from Maven Central with ``mvn`` into
``.cache/kafka/<version>/libs`` (override the ``.cache/kafka`` root with the
environment variable ``PIPELINE_DEVKAFKA_CACHE``). ``DevKafka`` then formats a
KRaft storage directory and runs ``kafka.Kafka`` as a combined broker and
controller on 127.0.0.1, as a detached process with a pid file, so a later
command (``pipeline kafka stop``, a CI trap) can stop it.

    with DevKafka(port=19092) as broker:
        producer = Producer({"bootstrap.servers": broker.bootstrap_servers})

From a shell: ``python -m pipeline.dev.kafka start|stop|status|fetch [--port N]``
or ``pipeline kafka start|stop|status|fetch``.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import fcntl
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import TracebackType

from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from pipeline.errors import DevKafkaError

__all__ = [
    "DEFAULT_PORT",
    "KAFKA_VERSION",
    "DevKafka",
    "DevKafkaCluster",
    "DevKafkaError",
    "cache_root",
    "create_topics",
    "fetch",
    "free_port",
    "local_kafka",
    "main",
]

KAFKA_VERSION = "4.1.1"
SCALA_VERSION = "2.13"
# Kafka 4.1 brings slf4j-api 1.7.36 and log4j-core 2.24.3; log4j-slf4j-impl is the
# binding for slf4j 1.7 (log4j-slf4j2-impl would be the one for slf4j 2.x).
SLF4J_BINDING = ("org.apache.logging.log4j", "log4j-slf4j-impl", "2.24.3")
DEFAULT_PORT = 9092
DEFAULT_HEAP_OPTS = ("-Xmx1g",)
DEFAULT_START_TIMEOUT = 60.0
DEFAULT_STOP_TIMEOUT = 30.0
CACHE_ENV = "PIPELINE_DEVKAFKA_CACHE"
_MARKER = ".fetched"
_JVM_OPTS = (
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=20",
    "-XX:+ExplicitGCInvokesConcurrent",
    "-Djava.awt.headless=true",
)


# --- pure parts ---------------------------------------------------------------------------


def cache_root() -> Path:
    """``$PIPELINE_DEVKAFKA_CACHE``, else ``.cache/kafka`` in the repository (else the cwd)."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser().resolve()
    repo = Path(__file__).resolve().parents[2]
    base = repo if (repo / "pyproject.toml").is_file() else Path.cwd()
    return base / ".cache" / "kafka"


def render_pom(kafka_version: str = KAFKA_VERSION) -> str:
    """A throwaway pom whose runtime dependencies are the broker and its log binding."""
    deps = [
        ("org.apache.kafka", f"kafka_{SCALA_VERSION}", kafka_version),
        SLF4J_BINDING,
    ]
    dep_xml = "\n".join(
        f"    <dependency><groupId>{g}</groupId><artifactId>{a}</artifactId>"
        f"<version>{v}</version></dependency>"
        for g, a, v in deps
    )
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local.pipeline</groupId>
  <artifactId>devkafka</artifactId>
  <version>{kafka_version}</version>
  <packaging>pom</packaging>
  <dependencies>
{dep_xml}
  </dependencies>
</project>
"""


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


def read_pid(pid_file: Path) -> int | None:
    """The pid in ``pid_file``, or None when the file is missing or does not hold a pid."""
    try:
        text = pid_file.read_text(encoding="ascii").strip()
    except (FileNotFoundError, UnicodeDecodeError):
        return None
    return int(text) if text.isdigit() and int(text) > 0 else None


def write_pid(pid_file: Path, pid: int) -> None:
    """Write ``pid`` atomically (write a temporary file, then rename it)."""
    tmp = pid_file.with_suffix(".tmp")
    tmp.write_text(f"{pid}\n", encoding="ascii")
    tmp.replace(pid_file)


def pid_alive(pid: int) -> bool:
    """True when ``pid`` names a running (not zombie) process."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return True  # no procfs: trust kill(0)
    return stat.rsplit(")", 1)[-1].split()[0:1] != ["Z"]


def is_broker_process(pid: int, server_properties: Path) -> bool:
    """True when ``pid`` is a live ``kafka.Kafka`` run with this ``server_properties``.

    Guards against a stale pid file whose pid now belongs to another process.
    """
    if not pid_alive(pid):
        return False
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return True  # no procfs: the pid file is all we have
    return b"kafka.Kafka" in args and os.fsencode(server_properties) in args


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return True
        return False


def tail(path: Path, lines: int = 40) -> str:
    """The last ``lines`` lines of a text file ('' when it does not exist)."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


# --- fetching -----------------------------------------------------------------------------


def _find_tool(name: str, env_home: str | None = None) -> str:
    if env_home and os.environ.get(env_home):
        candidate = Path(os.environ[env_home]) / "bin" / name
        if candidate.is_file():
            return str(candidate)
    found = shutil.which(name)
    if found is None:
        raise DevKafkaError(f"`{name}` is not on PATH; install it (Java 17+ and Maven are needed)")
    return found


def fetch(kafka_version: str = KAFKA_VERSION, root: Path | None = None) -> Path:
    """Download the broker jars with Maven unless they are cached; return the libs folder."""
    home = (root or cache_root()) / kafka_version
    libs = home / "libs"
    if (home / _MARKER).is_file() and libs.is_dir():
        return libs
    home.mkdir(parents=True, exist_ok=True)
    with (home / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process may be fetching the same version
        if (home / _MARKER).is_file() and libs.is_dir():
            return libs
        staging = home / "libs.partial"
        shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(libs, ignore_errors=True)
        (home / "pom.xml").write_text(render_pom(kafka_version), encoding="utf-8")
        cmd = [
            _find_tool("mvn", "MAVEN_HOME"),
            "-q",
            "-B",
            "-Dstyle.color=never",
            "-f",
            str(home / "pom.xml"),
            "dependency:copy-dependencies",
            "-DincludeScope=runtime",
            f"-DoutputDirectory={staging}",
        ]
        result = subprocess.run(cmd, capture_output=True, text=True, check=False)
        jars = sorted(p.name for p in staging.glob("*.jar")) if staging.is_dir() else []
        if result.returncode != 0 or not any(j.startswith("kafka_") for j in jars):
            output = "\n".join((result.stdout + result.stderr).splitlines()[-30:])
            raise DevKafkaError(
                f"fetching Kafka {kafka_version} with Maven failed "
                f"(exit {result.returncode}); is Maven Central reachable?\n{output}"
            )
        staging.rename(libs)
        (home / _MARKER).write_text("\n".join(jars) + "\n", encoding="utf-8")
    return libs


# --- topics -------------------------------------------------------------------------------


def create_topics(
    bootstrap: str, names: Iterable[str], partitions: int = 1, timeout: float = 30.0
) -> list[str]:
    """Create ``names`` (replication factor 1) and wait until the broker lists all of them."""
    wanted = list(names)
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics(
        [NewTopic(n, num_partitions=partitions, replication_factor=1) for n in wanted],
        operation_timeout=timeout,
        request_timeout=timeout,
    )
    for future in futures.values():
        future.result(timeout=timeout)
    deadline = time.monotonic() + timeout
    while True:
        topics = admin.list_topics(timeout=timeout).topics
        ready = [
            n
            for n in wanted
            if n in topics
            and topics[n].error is None
            and len(topics[n].partitions) == partitions
            and all(p.leader >= 0 for p in topics[n].partitions.values())
        ]
        if len(ready) == len(wanted):
            return wanted
        if time.monotonic() > deadline:
            missing = sorted(set(wanted) - set(ready))
            raise DevKafkaError(f"topics not ready after {timeout:.0f}s: {missing}")
        time.sleep(0.1)


# --- the broker ---------------------------------------------------------------------------


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
        self._proc: subprocess.Popen[bytes] | None = None

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
        pid = read_pid(self.pid_file)
        if pid is not None and is_broker_process(pid, self.server_properties):
            return pid
        return None

    def is_running(self) -> bool:
        return self.pid() is not None

    def _alive(self) -> bool:
        # The process handle, when this object started the broker: /proc/<pid>/cmdline can
        # read empty or stale for a moment while the JVM launcher starts up.
        if self._proc is not None:
            return self._proc.poll() is None
        return self.is_running()

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
        java = _find_tool("java", "JAVA_HOME")
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
        with self.out_file.open("ab") as out:
            # Own session: the broker survives this process and ignores its Ctrl-C.
            self._proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.data_dir,
                start_new_session=True,
            )
        write_pid(self.pid_file, self._proc.pid)
        return True

    def kill(self) -> bool:
        """SIGKILL the broker (a crash, for failure tests); False if it was not running."""
        pid = self.pid()
        if pid is None:
            return False
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        self._wait_exit(pid, 10.0)
        self.pid_file.unlink(missing_ok=True)
        return True

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
            if not self._alive():
                code = self._proc.poll() if self._proc is not None else None
                raise DevKafkaError(
                    f"the broker exited during start-up (exit code {code}).\n{self._logs()}"
                )
            if self.answers(timeout=min(2.0, max(0.1, deadline - time.monotonic()))):
                return
            time.sleep(0.2)
        raise DevKafkaError(
            f"the broker did not answer on {self.bootstrap_servers} within "
            f"{self.start_timeout:.0f}s.\n{self._logs()}"
        )

    def stop(self) -> bool:
        """SIGTERM the broker, SIGKILL it after ``stop_timeout``; False if it was not running."""
        pid = self.pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            self._reap(0)
            return False
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
            os.kill(pid, signal.SIGCONT)  # a paused broker handles the SIGTERM once thawed
        if not self._wait_exit(pid, self.stop_timeout):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            self._wait_exit(pid, 10.0)
        self.pid_file.unlink(missing_ok=True)
        return True

    def status(self) -> str:
        """One line saying whether the broker runs and answers."""
        pid = self.pid()
        if pid is None:
            return f"Kafka on {self.bootstrap_servers}: not running"
        state = "answering" if self.answers() else "not answering"
        return (
            f"Kafka on {self.bootstrap_servers}: running (pid {pid}), {state}; log {self.log_file}"
        )

    def _wait_exit(self, pid: int, timeout: float) -> bool:
        if self._proc is not None and self._proc.pid == pid:
            return self._reap(timeout)
        deadline = time.monotonic() + timeout
        while pid_alive(pid):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.1)
        return True

    def _reap(self, timeout: float) -> bool:
        """Wait for the child this object started (if any), so it leaves no zombie."""
        if self._proc is None:
            return True
        try:
            self._proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return False
        self._proc = None
        return True

    def _logs(self) -> str:
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
        return "\n".join(node._logs() for node in self.nodes)

    def __enter__(self) -> DevKafkaCluster:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


# --- command line -------------------------------------------------------------------------


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


if __name__ == "__main__":
    sys.exit(main())
