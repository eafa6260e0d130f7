"""``pipeline schemas check``: would old data still be readable with these schemas?

Exit codes: 0 compatible (or nothing to compare with, said on stderr); 1 an incompatible
change, each named with its reason; 2 invalid settings, schemas or ref.
"""

from __future__ import annotations

import click

from pipeline.cli.exits import errors_as_exit
from pipeline.config import Settings, load_settings
from pipeline.events.schema_check import Finding, compare, default_ref, git_root, schemas_at


@click.group()
def schemas() -> None:
    """Check the Avro schemas of schemas/ (and the extra schema folders)."""


@schemas.command("check")
@click.option(
    "--against",
    "ref",
    default=None,
    help="Git ref to compare with (default: the last v* tag, else the merge base with "
    "origin/main or main, else HEAD~1).",
)
def check(ref: str | None) -> None:
    """Fail when a schema changed so that data written with the old one cannot be read."""
    from pipeline.events.catalog import load_expanded

    with errors_as_exit():
        settings = load_settings()
        folders = settings.schema_dirs()
        current = load_expanded(folders[0], folders[1:])
        findings: list[Finding] = []
        root = git_root(folders[0])
        if root is None:
            click.echo(f"note: {folders[0]} is not in a git repository; no history check", err=True)
        else:
            chosen, why = (ref, f"--against {ref}") if ref else default_ref(root)
            if chosen is None:
                click.echo(f"note: nothing to compare with: {why}", err=True)
            else:
                findings += compare(schemas_at(root, chosen, folders), current)
                click.echo(f"compared {len(current)} schemas with {why}")
        if settings.wire_format == "confluent":
            findings += _registry_findings(settings)
    for finding in findings:
        label = "INCOMPATIBLE" if finding.fatal else "note"
        click.echo(f"{label} {finding.name}: {finding.reason}", err=not finding.fatal)
    if any(f.fatal for f in findings):
        raise SystemExit(1)
    click.echo("schemas are backward compatible")


def _registry_findings(settings: Settings) -> list[Finding]:
    """Each event type's schema against the latest version of its subject in the registry."""
    import json

    from confluent_kafka.schema_registry import Schema
    from confluent_kafka.schema_registry.error import SchemaRegistryError

    from pipeline.errors import RegistryUnavailableError
    from pipeline.events.catalog import load_settings_catalog, schema_text
    from pipeline.events.compatibility import backward_problems
    from pipeline.events.registry_serde import subjects_for
    from pipeline.events.wire import registry_client

    catalog = load_settings_catalog(settings)
    client = registry_client(settings)
    findings: list[Finding] = []
    subjects = subjects_for(catalog, settings.topic, settings.dead_letter_topic)
    for event_type, subject in sorted(subjects.items()):
        text = schema_text(catalog.reader(event_type))
        try:
            if client.test_compatibility(subject, Schema(text, "AVRO")):
                continue
            latest = client.get_latest_version(subject).schema.schema_str or "{}"
        except SchemaRegistryError as exc:
            if exc.http_status_code == 404:
                findings.append(Finding(subject, "not registered yet", fatal=False))
                continue
            raise RegistryUnavailableError(f"registry check of {subject}: {exc}") from exc
        except Exception as exc:  # transport errors
            raise RegistryUnavailableError(f"registry check of {subject}: {exc}") from exc
        reasons = backward_problems(json.loads(latest), json.loads(text)) or ["(no detail)"]
        findings.append(Finding(subject, "the schema registry refuses it: " + "; ".join(reasons)))
    return findings
