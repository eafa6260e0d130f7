"""``pipeline replay``: run recorded conversations through a handler version, in memory,
and show how its outputs differ from the recorded ones.

Exit codes: 0 nothing changed; 1 something did (each change printed as a diff);
2 invalid arguments or settings, nothing to replay, or Kafka unreachable (one line).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import click
from confluent_kafka import KafkaException

from pipeline.cli.app_dir import app_dir_option, use_app_dir
from pipeline.cli.exits import errors_as_exit
from pipeline.config import Settings
from pipeline.errors import ConfigError, PipelineError
from pipeline.replay.diff import ConversationDiff, summarise
from pipeline.runtime.service import Service

# Built-in services whose handlers act outside Kafka: a replay would repeat the action.
NOT_REPLAYABLE = {
    "delivery": "it sends to the channels' APIs",
    "gateway": "it is an HTTP server, not a service with handlers",
}


def _moment(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is not an ISO 8601 time (2024-05-01T12:00:00Z)", param_hint="--from"
        ) from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _loader(spec: str, settings: Settings) -> Service:
    from pipeline.services import load_service

    if spec in NOT_REPLAYABLE:
        raise ConfigError(f"{spec} cannot be replayed: {NOT_REPLAYABLE[spec]}")
    service = load_service(spec, settings)
    if not isinstance(service, Service) or not service.handlers:
        raise ConfigError(f"{spec} is not a service with handlers: nothing to replay")
    return service


@contextmanager
def _unreachable_as_exit() -> Iterator[None]:
    """Kafka errors and a replay that does not finish in time: one line, exit 2."""
    try:
        yield
    except (KafkaException, TimeoutError) as exc:
        click.echo(f"error: {exc}", err=True)
        raise SystemExit(2) from None


@click.command()
@click.argument("conversation", required=False)
@click.option(
    "--service",
    "spec",
    default="agent",
    show_default=True,
    help="The handler version to replay through: a built-in name or module.path:attribute "
    "(a service, or a factory taking the settings).",
)
@click.option(
    "--from",
    "since",
    default=None,
    help="Replay only the inputs from this ISO 8601 time on, on the state the changelog "
    "recorded before it.",
)
@click.option(
    "--sample",
    type=click.IntRange(min=1),
    default=None,
    help="Replay the N most recent conversations (by message_received) instead of one.",
)
@click.option(
    "--answers",
    type=click.Choice(["fresh", "recorded"]),
    default="fresh",
    show_default=True,
    help="fresh: ask the configured model again; recorded: answer each model call as the "
    "model answered it when the conversation was recorded (no model cost, the same every "
    "time: a change of prompts, rules or tools judged on the same answers).",
)
@app_dir_option
def replay(
    conversation: str | None,
    spec: str,
    since: str | None,
    sample: int | None,
    answers: str,
    app_dir: Path,
) -> None:
    """Replay CONVERSATION's recorded inputs through a handler version and diff the outputs.

    The service runs in memory: recorded tool results are fed back instead of calling the
    tools, and nothing is produced to Kafka or sent to a channel. Exit 0: no difference;
    1: a difference (printed); 2: nothing to replay, or Kafka could not be read.
    """
    from pipeline.events.wire import make_serde
    from pipeline.replay.engine import replay_conversation
    from pipeline.replay.recording import recent_conversations

    if (conversation is None) == (sample is None):
        raise click.UsageError("give either CONVERSATION or --sample N")
    moment = _moment(since)
    use_app_dir(app_dir)
    diffs: list[ConversationDiff] = []
    recorded = answers == "recorded"
    with errors_as_exit(), _unreachable_as_exit():
        settings = Settings()
        if recorded:
            llm = settings.llm.model_copy(update={"provider": "recorded"})
            settings = settings.model_copy(update={"llm": llm})
        serde = make_serde(settings, register=False)
        _loader(spec, settings)  # a bad --service fails before Kafka is read
        chosen = (
            [conversation] if conversation else recent_conversations(settings, serde, sample or 0)
        )
        if not chosen:
            raise PipelineError(f"no conversations in {settings.topic('message_received')}")
        for conversation_id in chosen:
            diff = asyncio.run(
                replay_conversation(
                    settings,
                    serde,
                    lambda: _loader(spec, settings),
                    conversation_id,
                    since=moment,
                    recorded_answers=recorded,
                )
            )
            if conversation and not diff.inputs:
                raise PipelineError(
                    f"conversation {conversation_id!r} has no input that {spec} handles"
                    + (f" from {since} on" if since else "")
                )
            diffs.append(diff)
            click.echo(diff.report(new_label=spec))
    if sample is not None:
        click.echo("")
        click.echo(summarise(diffs))
    sys.exit(1 if any(d.changed for d in diffs) else 0)
