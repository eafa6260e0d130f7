"""``--app-dir``: where ``module.path:attribute`` is imported from (the current folder by
default, put first on ``sys.path`` as uvicorn and ``faststream run`` do)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

app_dir_option = click.option(
    "--app-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("."),
    show_default=True,
    help="Folder put first on sys.path to import module.path:attribute from.",
)


def use_app_dir(app_dir: Path) -> None:
    """Put ``app_dir`` first on ``sys.path``."""
    sys.path.insert(0, str(app_dir.resolve()))
