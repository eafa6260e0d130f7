"""``pipeline dlq``: list, show and redrive dead letters.

A letter's id is its position in the dead-letter topic, ``<partition>:<offset>``.
Redrive produces the letter's original value, key and headers to its source topic again,
once (``pipeline.deadletters.store`` says how that holds across processes and restarts).

Exit codes: 0 done; 1 refused, nothing produced (the letter was already redriven, or a
concurrent redrive of it took over); 2 no such letter, invalid settings or arguments, a
missing topic, or Kafka unreachable (one line on stderr).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import click

from pipeline.cli.exits import errors_as_exit
from pipeline.config import load_settings
from pipeline.deadletters import DeadLetterStore
from pipeline.errors import AlreadyRedriven, RedriveConflictError

REFUSED = 1


@contextmanager
def _store() -> Iterator[DeadLetterStore]:
    with errors_as_exit():
        settings = load_settings()
        store = DeadLetterStore.from_settings(settings)
    try:
        with errors_as_exit():
            yield store
    finally:
        store.close()


@click.group()
def dlq() -> None:
    """List, show and redrive dead letters (ids are <partition>:<offset>)."""


@dlq.command("list")
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True)
@click.option("--topic", "source_topic", default=None, help="Only letters read from TOPIC.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per letter.")
def list_command(limit: int, source_topic: str | None, as_json: bool) -> None:
    """The newest dead letters, newest first: id, when, source position, event type,
    stage, whether redriven, and the error."""
    with _store() as store:
        entries = store.list(limit=limit, source_topic=source_topic)
    if as_json:
        for entry in entries:
            click.echo(json.dumps(entry.as_json()))
        return
    if not entries:
        click.echo("no dead letters", err=True)
        return
    for entry in entries:
        click.echo(entry.line())


@dlq.command("show")
@click.argument("letter_id")
@click.option("--json", "as_json", is_flag=True, help="The letter as one JSON object.")
def show_command(letter_id: str, as_json: bool) -> None:
    """Every field of LETTER_ID: error, source position, original key and headers, and
    its redrive if it had one."""
    with _store() as store:
        entry = store.get(letter_id)
    click.echo(json.dumps(entry.as_json()) if as_json else entry.details())


@dlq.command("redrive")
@click.argument("letter_id")
@click.option("--operator", required=True, help="Who redrives it (recorded with the redrive).")
def redrive_command(letter_id: str, operator: str) -> None:
    """Produce LETTER_ID's original value, key and headers to its source topic again.

    Refused (exit 1, nothing produced) when the letter was already redriven.
    """
    with _store() as store:
        try:
            redrive = store.redrive(letter_id, operator=operator)
        except (AlreadyRedriven, RedriveConflictError) as exc:
            click.echo(f"refused: {exc}", err=True)
            sys.exit(REFUSED)
    click.echo(
        f"redriven {letter_id} to {redrive.target_topic}[{redrive.target_partition}]"
        f"@{redrive.target_offset} by {redrive.operator} (redrive {redrive.redrive_id})"
    )
