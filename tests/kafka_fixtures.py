"""A real Apache Kafka for the integration tests.

``kafka_bootstrap`` (session) picks the first broker it can get:

1. ``KAFKA_BOOTSTRAP_SERVERS`` when set (CI starts ``python -m pipeline.dev.kafka``);
2. an ``apache/kafka`` container through testcontainers when a Docker engine answers;
3. ``pipeline.dev.kafka.DevKafka`` on free ports (Java 17+ and Maven, no Docker).

When none works the integration tests are skipped with the reason, or fail in CI:
nothing is skipped in CI (``tests/environment.py`` says what counts as CI).
"""

from __future__ import annotations

import contextlib
import gc
import os
import socket
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient

from pipeline.dev.kafka import DevKafka, create_topics, free_port
from pipeline.errors import DevKafkaError
from tests.environment import skip_or_fail

__all__ = ["create_topics"]  # re-exported for tests: create_topics(bootstrap, names, partitions)

KAFKA_IMAGE = "apache/kafka:4.1.1"
READY_TIMEOUT = 60.0


def _answers(bootstrap: str, timeout: float) -> str | None:
    """None when ``bootstrap`` answers a metadata request, else why not."""
    try:
        metadata = AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=timeout)
    except Exception as exc:  # KafkaException: transport failure or timeout
        return f"{bootstrap} did not answer: {exc}"
    return None if metadata.brokers else f"{bootstrap} returned no brokers"


def _docker_answers() -> str | None:
    """None when a Docker engine answers a ping within 2 s, else why not."""
    docker_host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    if docker_host.startswith("unix://"):
        # A raw ping: the docker SDK leaks a socket (a ResourceWarning) when nobody listens.
        path = docker_host.removeprefix("unix://")
        if not Path(path).exists():
            return f"no Docker engine ({path} does not exist)"
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(2)
                sock.connect(path)
                sock.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
                reply = sock.recv(4096)
        except OSError as exc:
            return f"Docker engine at {path} does not answer ({exc})"
        return None if reply.startswith(b"HTTP/1.") and b" 200 " in reply[:16] else "bad ping"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            import docker

            client = docker.from_env(timeout=2)
            try:
                client.ping()
            finally:
                client.close()
        except Exception as exc:
            return f"Docker engine at {docker_host} does not answer ({type(exc).__name__})"
        finally:
            gc.collect()  # drop any half-open socket while its warning is ignored
    return None


@contextlib.contextmanager
def _kafka_container() -> Iterator[str]:
    """A single-node KRaft ``apache/kafka`` container; yields its bootstrap address.

    testcontainers' ``KafkaContainer`` drives the Confluent image's start scripts, so the
    Apache image is configured here through its ``KAFKA_*`` environment variables.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from testcontainers.core.container import DockerContainer

        container = DockerContainer(KAFKA_IMAGE)
        host = container.get_docker_client().host()
        port = free_port()
        container.with_bind_ports(9092, port).with_envs(
            KAFKA_NODE_ID="1",
            KAFKA_PROCESS_ROLES="broker,controller",
            KAFKA_LISTENERS="PLAINTEXT://:9092,CONTROLLER://:9093",
            KAFKA_ADVERTISED_LISTENERS=f"PLAINTEXT://{host}:{port}",
            KAFKA_CONTROLLER_LISTENER_NAMES="CONTROLLER",
            KAFKA_LISTENER_SECURITY_PROTOCOL_MAP="CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            KAFKA_CONTROLLER_QUORUM_VOTERS="1@localhost:9093",
            KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR="1",
            KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR="1",
            KAFKA_TRANSACTION_STATE_LOG_MIN_ISR="1",
            KAFKA_SHARE_COORDINATOR_STATE_TOPIC_REPLICATION_FACTOR="1",
            KAFKA_SHARE_COORDINATOR_STATE_TOPIC_MIN_ISR="1",
            KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS="0",
            KAFKA_AUTO_CREATE_TOPICS_ENABLE="false",
        )
        container.start()
    try:
        bootstrap = f"{host}:{port}"
        error = _answers(bootstrap, READY_TIMEOUT)
        if error is not None:
            raise RuntimeError(f"{KAFKA_IMAGE}: {error}")
        yield bootstrap
    finally:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            container.stop()


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``host:port`` of a running Kafka broker, shared by the whole test session."""
    env = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if env:
        error = _answers(env, 15.0)
        if error is not None:
            skip_or_fail(f"no Kafka broker: KAFKA_BOOTSTRAP_SERVERS is set but {error}")
        yield env
        return

    reasons = ["KAFKA_BOOTSTRAP_SERVERS is not set"]
    with contextlib.ExitStack() as stack:
        bootstrap: str | None = None
        docker_error = _docker_answers()
        if docker_error is None:
            try:
                bootstrap = stack.enter_context(_kafka_container())
            except Exception as exc:
                reasons.append(f"{KAFKA_IMAGE} via testcontainers failed: {exc}")
        else:
            reasons.append(docker_error)
        if bootstrap is None:
            data_dir: Path = tmp_path_factory.mktemp("devkafka")
            broker = DevKafka(free_port(), controller_port=free_port(), data_dir=data_dir)
            try:
                broker.start()
            except DevKafkaError as exc:
                reasons.append(f"pipeline.dev.kafka failed: {exc}")
                skip_or_fail("no Kafka broker: " + "; ".join(reasons))
            stack.callback(broker.stop)
            bootstrap = broker.bootstrap_servers
        yield bootstrap


@pytest.fixture(scope="session")
def admin(kafka_bootstrap: str) -> AdminClient:
    """A confluent-kafka AdminClient on the session's broker."""
    return AdminClient({"bootstrap.servers": kafka_bootstrap})


@pytest.fixture
def make_topics(
    kafka_bootstrap: str, admin: AdminClient, topic_prefix: str
) -> Iterator[Callable[..., list[str]]]:
    """``make_topics("orders", "replies", partitions=3)`` creates ``<prefix>orders`` etc.

    Returns the full names once the broker lists them; deletes them after the test.
    """
    created: list[str] = []

    def make(*names: str, partitions: int = 1) -> list[str]:
        full = create_topics(kafka_bootstrap, [topic_prefix + n for n in names], partitions)
        created.extend(full)
        return full

    yield make
    if created:
        unique = list(dict.fromkeys(created))  # a topic named twice crashes the Admin client
        for future in admin.delete_topics(unique, operation_timeout=30).values():
            with contextlib.suppress(Exception):
                future.result(timeout=30)


STOPPABLE_BROKER_HEAP = ("-Xmx384m",)


@pytest.fixture
def stoppable_broker(tmp_path: Path) -> Iterator[DevKafka]:
    """A broker of the test's own, which it may stop and start again (data kept): never
    the shared one."""
    kafka = DevKafka(
        free_port(),
        controller_port=free_port(),
        data_dir=tmp_path / "kafka",
        keep_data=True,
        heap_opts=STOPPABLE_BROKER_HEAP,
    )
    try:
        kafka.start()
    except DevKafkaError as exc:  # no Java or Maven here: the same rule as the broker fixture
        skip_or_fail(f"the test's own broker did not start: {exc}")
    try:
        yield kafka
    finally:
        kafka.stop()
