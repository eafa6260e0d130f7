"""``pipeline console``: helpers for the operator console's settings."""

from __future__ import annotations

import sys

import click


@click.group()
def console() -> None:
    """The operator console (run it with `pipeline run console`)."""


@console.command("hash-password")
@click.option(
    "--stdin", "from_stdin", is_flag=True, help="Read the password from stdin (one line)."
)
def hash_password_command(from_stdin: bool) -> None:
    """Print the password_hash of an operator for PIPELINE_CONSOLE__OPERATORS.

    The password is asked for twice (not echoed), or read from stdin with --stdin. The
    output is an argon2id hash ($argon2id$v=19$m=...,t=...,p=...$<salt>$<hash>): put it
    in {"<operator>": {"password_hash": "<output>", "tenants": [...], "role": ...}}.
    """
    from pipeline.services.console.passwords import hash_password

    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    if len(password) < 8:
        raise click.UsageError("a password of fewer than 8 characters is refused")
    click.echo(hash_password(password))
