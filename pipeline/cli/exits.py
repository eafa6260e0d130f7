"""How every ``pipeline`` command fails: one line on stderr and exit status 2."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import click
from pydantic import ValidationError

from pipeline.errors import PipelineError


@contextmanager
def errors_as_exit() -> Iterator[None]:
    """Turn the package's errors and invalid settings into one line on stderr and exit 2."""
    try:
        yield
    except PipelineError as exc:
        click.echo(f"error: {exc}", err=True)
        raise SystemExit(2) from None
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        click.echo(f"error: invalid settings: {problems}", err=True)
        raise SystemExit(2) from None
