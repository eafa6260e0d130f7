"""``pipeline asyncapi``: write the AsyncAPI 3 document of the topics and their events."""

from __future__ import annotations

import json
from pathlib import Path

import click
import yaml

from pipeline.cli.exits import errors_as_exit
from pipeline.config import load_settings


@click.command("asyncapi")
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="File to write (default: standard output).",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["yaml", "json"]),
    default="yaml",
    show_default=True,
)
def asyncapi(output: Path | None, fmt: str) -> None:
    """Write an AsyncAPI 3 document generated from topics/, schemas/ and the services:
    channels, messages with their Avro schemas, keys, headers, who sends and receives."""
    from pipeline.asyncapi import settings_document

    with errors_as_exit():
        doc = settings_document(load_settings())
    if fmt == "json":
        text = json.dumps(doc, indent=2) + "\n"
    else:
        text = yaml.safe_dump(doc, sort_keys=False, allow_unicode=True, width=100)
    if output is None:
        click.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")
