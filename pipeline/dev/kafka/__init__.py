"""A local Apache Kafka for development and tests, without Docker: one node or a cluster.

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

The parts: :mod:`.artifacts` (the jars and the cache), :mod:`.config` (what a node runs
with), :mod:`.process` (the JVM process, pid files, ports), :mod:`.broker` (one node,
:class:`DevKafka`), :mod:`.cluster` (:class:`DevKafkaCluster`), :mod:`.topics` (creating
test topics) and :mod:`.command_line` (the command line).
"""

from pipeline.dev.kafka.artifacts import (
    CACHE_ENV,
    KAFKA_VERSION,
    SCALA_VERSION,
    SLF4J_BINDING,
    cache_root,
    fetch,
    find_tool,
    render_pom,
)
from pipeline.dev.kafka.broker import (
    DEFAULT_HEAP_OPTS,
    DEFAULT_PORT,
    DEFAULT_START_TIMEOUT,
    DEFAULT_STOP_TIMEOUT,
    DevKafka,
)
from pipeline.dev.kafka.cluster import DevKafkaCluster
from pipeline.dev.kafka.command_line import local_kafka, main
from pipeline.dev.kafka.config import (
    broker_command,
    format_command,
    java_command,
    random_cluster_id,
    render_log4j2,
    render_server_properties,
)
from pipeline.dev.kafka.process import (
    BrokerProcess,
    free_port,
    is_broker_process,
    pid_alive,
    port_in_use,
    read_pid,
    tail,
    write_pid,
)
from pipeline.dev.kafka.topics import create_topics
from pipeline.errors import DevKafkaError

__all__ = [
    "CACHE_ENV",
    "DEFAULT_HEAP_OPTS",
    "DEFAULT_PORT",
    "DEFAULT_START_TIMEOUT",
    "DEFAULT_STOP_TIMEOUT",
    "KAFKA_VERSION",
    "SCALA_VERSION",
    "SLF4J_BINDING",
    "BrokerProcess",
    "DevKafka",
    "DevKafkaCluster",
    "DevKafkaError",
    "broker_command",
    "cache_root",
    "create_topics",
    "fetch",
    "find_tool",
    "format_command",
    "free_port",
    "is_broker_process",
    "java_command",
    "local_kafka",
    "main",
    "pid_alive",
    "port_in_use",
    "random_cluster_id",
    "read_pid",
    "render_log4j2",
    "render_pom",
    "render_server_properties",
    "tail",
    "write_pid",
]
