"""The ``pipeline`` command: run services, operate topics, produce and tail events."""

from __future__ import annotations

import json
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import click

from pipeline.cli.app_dir import app_dir_option, use_app_dir
from pipeline.cli.asyncapi import asyncapi
from pipeline.cli.chat_token import chat_token_command
from pipeline.cli.console import console
from pipeline.cli.dlq import dlq
from pipeline.cli.evaluate import evaluate
from pipeline.cli.events import events
from pipeline.cli.exits import errors_as_exit
from pipeline.cli.kafka import kafka
from pipeline.cli.replay import replay
from pipeline.cli.schemas import schemas
from pipeline.cli.topics import topics
from pipeline.config import Settings, load_settings
from pipeline.errors import PipelineError


def _settings() -> Settings:
    """Settings from the environment; a bad one is one line on stderr and exit 2."""
    with errors_as_exit():
        return load_settings()


@click.group()
@click.version_option(package_name="kafka-agent-pipeline")
def main() -> None:
    """Run and operate the event pipeline. Settings come from PIPELINE_* variables."""


main.add_command(topics)
main.add_command(kafka)
main.add_command(asyncapi)
main.add_command(console)
main.add_command(events)
main.add_command(schemas)
main.add_command(replay)
main.add_command(dlq)
main.add_command(chat_token_command)
main.add_command(evaluate)


@main.command()
@click.argument("service")
@app_dir_option
def run(service: str, app_dir: Path) -> None:
    """Run SERVICE until SIGTERM: a built-in name (echo) or module.path:attribute.

    The current folder (or --app-dir) is put first on sys.path, as uvicorn and
    `faststream run` do, so `pipeline run my_service:service` works from the module's folder.
    """
    from pipeline.services import load_service

    use_app_dir(app_dir)
    settings = _settings()
    try:
        svc = load_service(service, settings)
    except PipelineError as exc:
        raise click.ClickException(str(exc)) from exc
    sys.exit(svc.run_forever())


@main.command()
@click.argument("event_type")
@click.argument("body", default="-")
@click.option("--conversation", "-c", required=True, help="Conversation id (the Kafka key).")
@click.option("--tenant", default="default", show_default=True, help="Tenant id.")
@click.option("--timeout", default=30.0, show_default=True, help="Seconds to wait for the ack.")
def produce(event_type: str, body: str, conversation: str, tenant: str, timeout: float) -> None:
    """Produce one EVENT_TYPE event; BODY is its fields as JSON ('-' reads stdin).

    The body is checked against the event's schema first: every problem is reported at
    once, naming the field, unknown fields included; then nothing is produced and the
    command exits with status 2. `pipeline events show EVENT_TYPE` prints a valid body.
    """
    from confluent_kafka import Producer

    from pipeline.events.json_body import body_problems, to_datum
    from pipeline.events.model import Event, Metadata
    from pipeline.events.wire import make_serde
    from pipeline.observability.kafka_logs import cli_connection, wait_for_metadata
    from pipeline.observability.tracing import child_traceparent
    from pipeline.runtime import headers as h
    from pipeline.runtime.producer import producer_config

    settings = _settings()
    text = sys.stdin.read() if body == "-" else body
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise click.UsageError(f"BODY is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise click.UsageError("BODY must be a JSON object of the event's fields")
    try:
        serde = make_serde(settings)
        schema = serde.catalog.reader(event_type).parsed
        problems = body_problems(schema, data)
        if problems:
            lines = "\n".join(f"  {problem}" for problem in problems)
            click.echo(
                f"error: {event_type}: {len(problems)} problem(s) in BODY, nothing produced "
                f"(`pipeline events show {event_type}` lists the fields):\n{lines}",
                err=True,
            )
            sys.exit(2)
        metadata = Metadata.new(event_type, conversation, tenant_id=tenant, producer="cli")
        event = Event(metadata, to_datum(schema, data))
        serde.validate(event_type, event.to_record())
        value = serde.encode(event)
    except PipelineError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)

    connection = cli_connection(settings.bootstrap_servers)
    producer = Producer({**producer_config(settings, "pipeline-cli"), **connection.client_config()})
    with errors_as_exit():
        wait_for_metadata(producer, connection, timeout)
    errors: list[str] = []
    producer.produce(
        settings.topic(event_type),
        value=value,
        key=conversation,
        headers=[
            (h.EVENT_TYPE, event_type),
            (h.EVENT_ID, str(metadata.event_id)),
            (h.CONTENT_TYPE, serde.content_type),
            (h.TRACEPARENT, child_traceparent(None)),
        ],
        on_delivery=lambda err, _msg: errors.append(str(err)) if err else None,
    )
    if producer.flush(timeout) or errors:
        click.echo(f"error: not acknowledged: {errors or 'timed out'}", err=True)
        sys.exit(1)
    click.echo(
        json.dumps({"event_id": str(metadata.event_id), "topic": settings.topic(event_type)})
    )


@main.command()
@click.argument("topic")
@click.option("--from-beginning", is_flag=True, help="Start at the oldest record, not the end.")
@click.option("--conversation", "-c", default=None, help="Only this conversation's events.")
@click.option("--max-events", type=int, default=None, help="Stop after this many lines.")
@click.option("--idle-timeout", type=float, default=None, help="Stop after this long idle (s).")
def tail(
    topic: str,
    from_beginning: bool,
    conversation: str | None,
    max_events: int | None,
    idle_timeout: float | None,
) -> None:
    """Print TOPIC's events as JSON lines (TOPIC is a logical name: the prefix is added).

    While it runs, a line on stderr says when Kafka cannot be reached and when it is back.
    """
    from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, Consumer, TopicPartition

    from pipeline.events.jsonable import jsonable
    from pipeline.events.wire import make_serde
    from pipeline.observability.kafka_logs import (
        announce,
        announcing_connection,
        wait_for_metadata,
    )

    settings = _settings()
    serde = make_serde(settings, register=False)
    physical = settings.topic(topic)
    connection = announcing_connection(settings.bootstrap_servers, "tail")
    consumer = Consumer(
        {
            **settings.consumer_config(),
            **connection.consumer_config(),
            "group.id": f"pipeline-tail-{uuid.uuid4()}",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
        }
    )
    try:
        with errors_as_exit():
            metadata = wait_for_metadata(consumer, connection, 10.0, physical)
        found = metadata.topics.get(physical)
        if found is None or found.error is not None or not found.partitions:
            raise click.ClickException(f"topic {physical!r} does not exist")
        start = OFFSET_BEGINNING if from_beginning else OFFSET_END
        consumer.assign([TopicPartition(physical, p, start) for p in found.partitions])
        announce(connection)
        printed, last_seen = 0, time.monotonic()
        while max_events is None or printed < max_events:
            msg = consumer.poll(0.2)
            if msg is None:
                if idle_timeout is not None and time.monotonic() - last_seen > idle_timeout:
                    break
                continue
            last_seen = time.monotonic()
            if msg.error() is not None:
                continue
            connection.up()
            key = msg.key()
            key_text = key.decode("utf-8", "replace") if isinstance(key, bytes) else key
            if conversation is not None and key_text != conversation:
                continue
            line: dict[str, Any] = {
                "topic": msg.topic(),
                "partition": msg.partition(),
                "offset": msg.offset(),
                "key": key_text,
            }
            try:
                event_type, record = serde.decode_record(msg.value() or b"")
                line.update(event_type=event_type, event=jsonable(record))
            except PipelineError as exc:
                line["error"] = str(exc)
            click.echo(json.dumps(line))
            printed += 1
    finally:
        consumer.close()


@main.command()
@click.argument("conversation")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per event.")
def timeline(conversation: str, as_json: bool) -> None:
    """Show CONVERSATION's events across every conversation topic, in order."""
    from pipeline.events.wire import make_serde
    from pipeline.timeline import conversation_timeline, render

    settings = _settings()
    serde = make_serde(settings, register=False)
    with errors_as_exit():
        entries = conversation_timeline(settings, serde, conversation)
    if not entries:
        click.echo(f"no events for conversation {conversation!r}", err=True)
        sys.exit(1)
    click.echo(render(entries, as_json))


@main.command()
@click.option(
    "--kafka-port",
    default=9092,
    show_default=True,
    help="Port of the local Kafka started when PIPELINE_BOOTSTRAP_SERVERS is unset.",
)
@click.option(
    "--metrics-base-port",
    default=9101,
    show_default=True,
    help="Service N serves /metrics, /healthz, /readyz on this port + N.",
)
@click.option(
    "--log-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path(".cache/logs"),
    show_default=True,
    help="One log file per service.",
)
@click.option(
    "--gateway-port",
    type=int,
    default=None,
    help="The gateway's HTTP port [default: PIPELINE_GATEWAY__PORT or 8080].",
)
@click.option(
    "--console-port",
    type=int,
    default=None,
    help="The console's HTTP port [default: PIPELINE_CONSOLE__PORT or 8090].",
)
@click.option("--only", multiple=True, help="Run only these services (repeatable).")
def up(
    kafka_port: int,
    metrics_base_port: int,
    log_dir: Path,
    gateway_port: int | None,
    console_port: int | None,
    only: tuple[str, ...],
) -> None:
    """Run every service on this machine, supervised, until Ctrl-C or SIGTERM.

    Starts a local Kafka when PIPELINE_BOOTSTRAP_SERVERS is unset, and applies topics/.
    Each service logs to its file in --log-dir; this terminal shows when a service loses
    Kafka or has it back, and why a service exited (its last error line).
    """
    import signal

    from pipeline.dev.stack.local import LocalStack
    from pipeline.dev.stack.supervisor import SERVICES

    services = list(only) or list(SERVICES)
    ports = {"PIPELINE_GATEWAY__PORT": gateway_port, "PIPELINE_CONSOLE__PORT": console_port}
    stack = LocalStack(
        {name: str(port) for name, port in ports.items() if port is not None},
        services=services,
        kafka_port=kafka_port,
        metrics_base_port=metrics_base_port,
        log_dir=log_dir,
        notify=lambda line: click.echo(f"up: {line}"),
    )

    def request_stop(*_: object) -> None:
        stack.stop_requested.set()
        if stack.supervisor is not None:
            stack.supervisor.stopping.set()

    # Before the start: a signal while the services are starting stops them too.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, request_stop)
    try:
        stack.start()
    except PipelineError as exc:
        stack.stop()
        raise click.ClickException(str(exc)) from exc
    assert stack.supervisor is not None
    supervisor = stack.supervisor
    if stack.stop_requested.is_set():
        supervisor.stopping.set()
    gateway = stack.env.get("PIPELINE_GATEWAY__PORT", "8080")
    console = stack.env.get("PIPELINE_CONSOLE__PORT", "8090")
    click.echo(
        f"up: {', '.join(services)} on {stack.env['PIPELINE_BOOTSTRAP_SERVERS']}; "
        f"gateway on http://127.0.0.1:{gateway}; console on http://127.0.0.1:{console}; "
        f"logs in {log_dir}; Ctrl-C stops"
    )
    chat = stack.chat_link() if "gateway" in services else None
    if chat is not None:
        click.echo(
            f"chat in your browser: {chat.url}\n"
            f"  (the token expires at {chat.expires_text}; `pipeline chat-token` makes a new one)"
        )
    supervisor.watch()
    codes = stack.stop()
    click.echo(f"stopped: {codes}")
    if supervisor.failure:
        raise click.ClickException(supervisor.failure)


@main.command()
@click.option(
    "--kafka-port",
    default=9092,
    show_default=True,
    help="Port of the local Kafka started when PIPELINE_BOOTSTRAP_SERVERS is unset.",
)
@click.option("--gateway-port", default=8080, show_default=True)
@click.option(
    "--log-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path(".cache/demo-logs"),
    show_default=True,
)
@click.option("--timeout", default=60.0, show_default=True, help="Seconds to wait for replies.")
def demo(kafka_port: int, gateway_port: int, log_dir: Path, timeout: float) -> None:
    """Send scripted conversations through the live pipeline and show what happened.

    Runs every service with local stand-ins for Slack, WhatsApp, web callbacks and SMTP;
    exits non-zero if any expected reply did not arrive.
    """
    try:
        from pipeline.dev.stack.demo import run_demo
    except ModuleNotFoundError as exc:
        if exc.name is None or not exc.name.startswith("aiosmtpd"):
            raise
        raise click.ClickException(
            f"pipeline demo needs the dev extra ({exc.name} is missing): "
            "pip install 'kafka-agent-pipeline[dev]', or run scripts/bootstrap"
        ) from exc

    sys.exit(
        run_demo(kafka_port=kafka_port, gateway_port=gateway_port, log_dir=log_dir, timeout=timeout)
    )
