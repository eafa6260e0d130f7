"""``pipeline topics``: apply, check and list the topic definitions of ``topics/``.

Settings (servers, topic prefix, folders, replication override) come from the
environment (``PIPELINE_*``). Exit codes: 0 ok; 1 ``check`` found drift; 2 the
definitions are invalid, unsafe to apply, or the cluster could not be reached.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from pipeline import topology
from pipeline.cli.exits import errors_as_exit
from pipeline.config import Settings, load_settings

_timeout_option = click.option(
    "--timeout",
    type=click.FloatRange(min=0.1),
    default=topology.DEFAULT_TIMEOUT_SECONDS,
    show_default=True,
    help="Seconds to wait for each answer from the cluster.",
)
_topics_dir_option = click.option(
    "--topics-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Topic definitions folder (default: PIPELINE_TOPICS_DIR or the bundled one).",
)


@click.group()
def topics() -> None:
    """Create, check and list the topics defined in topics/."""


@topics.command("apply")
@_topics_dir_option
@_timeout_option
def apply_command(topics_dir: Path | None, timeout: float) -> None:
    """Create missing topics, add partitions and align configs (never shrinks or
    changes cleanup.policy)."""
    with errors_as_exit():
        settings = _settings(topics_dir)
        definitions = topology.load_settings_topology(settings)
        admin = topology.admin_client(settings)
        changes = topology.apply(admin, definitions, settings, timeout=timeout)
        left = [
            d
            for d in topology.check(admin, definitions, settings, timeout=timeout)
            if not d.fixable
        ]
    for change in changes:
        click.echo(change.describe_change())
    if not changes:
        click.echo("no changes")
    for drift in left:
        click.echo(f"not changed: {drift} ({drift.advice()})")


@topics.command("check")
@_topics_dir_option
@_timeout_option
def check_command(topics_dir: Path | None, timeout: float) -> None:
    """Report every difference between the cluster and the definitions (exit 1 if any)."""
    with errors_as_exit():
        settings = _settings(topics_dir)
        definitions = topology.load_settings_topology(settings)
        admin = topology.admin_client(settings)
        drifts = topology.check(admin, definitions, settings, timeout=timeout)
    for drift in drifts:
        suffix = " (unsafe: apply refuses this change)" if drift.unsafe else ""
        if not drift.fixable and not drift.unsafe:
            suffix = f" ({drift.advice()})"
        click.echo(f"{drift.kind}: {drift}{suffix}")
    if drifts:
        raise SystemExit(1)
    click.echo("in sync")


@topics.command("list")
@_topics_dir_option
def list_command(topics_dir: Path | None) -> None:
    """Print the topics as they would be applied (prefix and replication override included)."""
    with errors_as_exit():
        settings = _settings(topics_dir)
        definitions = topology.load_settings_topology(settings)
    for topic in definitions:
        configs = ", ".join(f"{k}={v}" for k, v in sorted(topic.configs.items()))
        click.echo(
            f"{settings.topic(topic.name)}  kind={topic.kind}  partitions={topic.partitions}  "
            f"replication={topic.replication_factor}  key={topic.key}  "
            f"value={topic.value_schema or '-'}  configs: {configs or '-'}"
        )


def _settings(topics_dir: Path | None) -> Settings:
    overrides: dict[str, Any] = {}
    if topics_dir is not None:
        overrides["topics_dir"] = topics_dir
    return load_settings(**overrides)
