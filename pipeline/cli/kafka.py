"""``pipeline kafka ...``: run the local development broker (see ``pipeline.devkafka``)."""

from __future__ import annotations

from pathlib import Path

import click

from pipeline import devkafka

_port = click.option(
    "--port", type=int, default=devkafka.DEFAULT_PORT, show_default=True, help="Broker port."
)
_data_dir = click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Folder for config, logs and KRaft data [default: .cache/kafka/run-<port>].",
)


@click.group()
def kafka() -> None:
    """A local single-node Apache Kafka (KRaft) for development and tests, without Docker."""


@kafka.command()
@_port
@click.option("--controller-port", type=int, default=None, help="[default: port + 1]")
@_data_dir
@click.option("--keep-data", is_flag=True, help="Keep topics and offsets of the last run.")
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
    controller_port: int | None,
    data_dir: Path | None,
    keep_data: bool,
    heap: str,
    timeout: float,
) -> None:
    """Start the broker (fetching the jars on first use) and wait until it answers."""
    broker = devkafka.DevKafka(
        port,
        controller_port=controller_port,
        data_dir=data_dir,
        keep_data=keep_data,
        heap_opts=heap.split(),
        start_timeout=timeout,
    )
    try:
        broker.start()
    except devkafka.DevKafkaError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(
        f"Kafka {devkafka.KAFKA_VERSION} ready on {broker.bootstrap_servers} "
        f"(log {broker.log_file})"
    )


@kafka.command()
@_port
@_data_dir
def stop(port: int, data_dir: Path | None) -> None:
    """Stop the broker (SIGTERM, then SIGKILL after a deadline)."""
    broker = devkafka.DevKafka(port, data_dir=data_dir)
    try:
        stopped = broker.stop()
    except devkafka.DevKafkaError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo("stopped" if stopped else "not running")


@kafka.command()
@_port
@_data_dir
def status(port: int, data_dir: Path | None) -> None:
    """Say whether the broker runs and answers; exit 3 when it does not run."""
    broker = devkafka.DevKafka(port, data_dir=data_dir)
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
