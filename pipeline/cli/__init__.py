"""The ``pipeline`` command."""

from __future__ import annotations

import click


@click.group()
def main() -> None:
    """Run and operate the event pipeline."""
