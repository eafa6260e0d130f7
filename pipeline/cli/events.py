"""``pipeline events``: the event types this process knows, their topics and their fields.

The types are the schema catalog's (the bundled schemas plus ``PIPELINE_EXTRA_SCHEMA_DIRS``)
and the topics the topic definitions' (plus ``PIPELINE_EXTRA_TOPIC_DIRS``). ``show`` prints
an example body that ``pipeline produce`` accepts as it is.
"""

from __future__ import annotations

import json
import textwrap

import click

from pipeline.cli.exits import errors_as_exit
from pipeline.config import Settings, load_settings
from pipeline.events.catalog import SchemaCatalog, load_settings_catalog
from pipeline.events.json_body import describe_fields, example_body
from pipeline.topology import Topology, load_settings_topology


@click.group(invoke_without_command=True)
@click.pass_context
def events(ctx: click.Context) -> None:
    """List the event types with their topics; `events show TYPE` describes one."""
    if ctx.invoked_subcommand is not None:
        return
    with errors_as_exit():
        settings = load_settings()
        catalog = load_settings_catalog(settings)
        topology = load_settings_topology(settings)
    rows = [
        (
            event_type,
            ", ".join(_topics_of(catalog, topology, settings, event_type)) or "-",
            catalog.reader(event_type).full_name,
        )
        for event_type in catalog.event_types
    ]
    header = ("EVENT TYPE", "TOPIC", "SCHEMA")
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(2)]
    for row in [header, *rows]:
        click.echo(f"{row[0]:<{widths[0]}}  {row[1]:<{widths[1]}}  {row[2]}")


@events.command("show")
@click.argument("event_type")
@click.option("--example", "example_only", is_flag=True, help="Print only the example body.")
def show(event_type: str, example_only: bool) -> None:
    """Print EVENT_TYPE's fields with their docs, and an example body for `pipeline produce`."""
    with errors_as_exit():
        settings = load_settings()
        catalog = load_settings_catalog(settings)
        known = catalog.reader(event_type)
        topology = load_settings_topology(settings)
    example = json.dumps(example_body(known.parsed), indent=2)
    if example_only:
        click.echo(example)
        return
    topics = _topics_of(catalog, topology, settings, event_type)
    click.echo(f"{event_type}: {known.parsed.get('doc', '')}")
    click.echo(f"  schema  {known.full_name}  ({catalog.source(event_type) or 'in memory'})")
    click.echo(f"  topic   {', '.join(topics) or '- (no topic definition names this schema)'}")
    click.echo("")
    click.echo("Fields (metadata is set by the producer):")
    for field in describe_fields(known.parsed):
        need = "required" if field.default is None else f"default {field.default}"
        click.echo(f"  {field.path}  {field.type}  [{need}]")
        if field.doc:
            click.echo(
                textwrap.fill(
                    field.doc, width=88, initial_indent=" " * 6, subsequent_indent=" " * 6
                )
            )
    click.echo("")
    click.echo(f"Example body (pipeline produce {event_type} BODY -c CONVERSATION):")
    click.echo(example)


def _topics_of(
    catalog: SchemaCatalog, topology: Topology, settings: Settings, event_type: str
) -> list[str]:
    full_name = catalog.reader(event_type).full_name
    return [settings.topic(t.name) for t in topology if t.value_schema == full_name]
