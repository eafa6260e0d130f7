"""``pipeline kafka ...``: run the local development broker (see ``pipeline.dev.kafka``)."""

from __future__ import annotations

from pathlib import Path

import click

from pipeline.dev import kafka as devkafka

_port = click.option(
    "--port", type=int, default=devkafka.DEFAULT_PORT, show_default=True, help="Broker port."
)
_data_dir = click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Folder for config, logs and KRaft data "
    "[default: .cache/kafka/run-<port>, or cluster-<port> for several brokers].",
)
_brokers = click.option(
    "--brokers",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Nodes in the cluster (each broker and controller; 3 gives replication 3 with "
    "min.insync.replicas 2). Node i listens on port + 2(i-1).",
)


@click.group()
def kafka() -> None:
    """A local Apache Kafka (KRaft, one node or a cluster) for development and tests, without
    Docker. Data is kept across restarts unless `start --wipe`."""


@kafka.command()
@_port
@_brokers
@click.option("--controller-port", type=int, default=None, help="[default: port + 1]")
@_data_dir
@click.option("--wipe", is_flag=True, help="Delete the topics and offsets of the last run.")
@click.option("--keep-data", is_flag=True, hidden=True, help="The default; kept for scripts.")
@click.option(
    "--heap",
    default=" ".join(devkafka.DEFAULT_HEAP_OPTS),
    show_default=True,
    help="JVM heap options.",
)
@click.option(
    "--timeout",
    type=float,
    default=devkafka.DEFAULT_START_TIMEOUT,
    show_default=True,
    help="Seconds to wait until the broker answers.",
)
def start(
    port: int,
    brokers: int,
    controller_port: int | None,
    data_dir: Path | None,
    wipe: bool,
    keep_data: bool,
    heap: str,
    timeout: float,
) -> None:
    """Start the broker(s) (fetching the jars on first use) and wait until they answer."""
    try:
        broker = devkafka.local_kafka(
            brokers,
            port,
            data_dir=data_dir,
            controller_port=controller_port,
            wipe=wipe,
            heap_opts=heap.split(),
            start_timeout=timeout,
        )
        broker.start()
    except devkafka.DevKafkaError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(
        f"Kafka {devkafka.KAFKA_VERSION} ready on {broker.bootstrap_servers} ({broker.data_dir})"
    )


@kafka.command()
@_port
@_brokers
@_data_dir
def stop(port: int, brokers: int, data_dir: Path | None) -> None:
    """Stop the broker(s) (SIGTERM, then SIGKILL after a deadline)."""
    broker = devkafka.local_kafka(brokers, port, data_dir=data_dir)
    try:
        stopped = broker.stop()
    except devkafka.DevKafkaError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo("stopped" if stopped else "not running")


@kafka.command()
@_port
@_brokers
@_data_dir
def status(port: int, brokers: int, data_dir: Path | None) -> None:
    """Say whether the broker(s) run and answer; exit 3 when none runs."""
    broker = devkafka.local_kafka(brokers, port, data_dir=data_dir)
    click.echo(broker.status())
    if not broker.is_running():
        raise SystemExit(3)


@kafka.command()
def fetch() -> None:
    """Download the broker jars from Maven Central (skipped when cached)."""
    try:
        libs = devkafka.fetch()
    except devkafka.DevKafkaError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"Kafka {devkafka.KAFKA_VERSION} jars in {libs}")
