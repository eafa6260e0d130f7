"""The fenced code blocks of README.md and docs/, and how the tests run them.

A block is a fence with a language (```` ```python ````). An HTML comment on the line
right before the fence says how it is checked, when running it as it stands is not the
way:

- ``<!-- docs-test: file PATH -->``: an excerpt of that file of the repository, which
  must contain it word for word (the file's own tests run it);
- ``<!-- docs-test: synopsis -->``: a ``text`` block of ``pipeline`` command lines with
  placeholders; every command and option must exist;
- ``<!-- docs-test: skip: REASON -->``: not run (the whole stack, Docker, a benchmark).

Without a comment: ``python`` runs (a first line ``# name.py`` makes it that file, and
a ``# test_*.py`` file runs under pytest), ``bash`` runs in the page's shell, ``toml``,
``yaml`` and ``json`` are parsed, and ``text`` is output shown to the reader, which must
not hold commands to run.
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from tests.paths import REPO

LANGUAGES = frozenset({"python", "bash", "toml", "yaml", "json", "text"})
_FENCE = re.compile(r"^(?P<indent> *)```(?P<lang>[^\s`]*)[^\n]*$")
_MARK = re.compile(r"^<!-- docs-test: (?P<kind>file|synopsis|skip)(?::? (?P<arg>.*?))? -->$")


@dataclass(frozen=True)
class Block:
    """One fenced code block of a page."""

    page: str  # relative to the repository, e.g. "docs/getting-started.md"
    line: int  # of the opening fence, 1-based
    lang: str
    code: str
    mark: str | None = None  # "file", "synopsis", "skip"
    mark_arg: str | None = None

    @property
    def where(self) -> str:
        return f"{self.page}:{self.line}"

    @property
    def filename(self) -> str | None:
        """``name.py`` when the block's first line is ``# name.py``."""
        first = self.code.split("\n", 1)[0]
        found = re.fullmatch(r"# ([\w/]+\.py)", first)
        return found.group(1) if found else None


def pages() -> list[Path]:
    """README.md and every Markdown page of docs/."""
    return [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]


def blocks(page: Path) -> list[Block]:
    """The fenced blocks of ``page``, in order, with the mark before each."""
    lines = page.read_text(encoding="utf-8").split("\n")
    found: list[Block] = []
    index = 0
    while index < len(lines):
        opening = _FENCE.match(lines[index])
        if opening is None:
            index += 1
            continue
        indent = len(opening["indent"])
        end = index + 1
        while end < len(lines) and lines[end].strip() != "```":
            end += 1
        code = "\n".join(line[indent:] for line in lines[index + 1 : end]) + "\n"
        mark = _MARK.match(lines[index - 1].strip()) if index else None
        found.append(
            Block(
                page=str(page.relative_to(REPO)),
                line=index + 1,
                lang=opening["lang"],
                code=code,
                mark=mark["kind"] if mark else None,
                mark_arg=mark["arg"] if mark else None,
            )
        )
        index = end + 1
    return found


def all_blocks() -> list[Block]:
    return [block for page in pages() for block in blocks(page)]


def workdir(tmp_path: Path) -> Path:
    """A folder that looks like the repository's root (its top-level entries linked), where
    a page's files are written and its blocks run, as a reader would run them there."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    for entry in REPO.iterdir():
        if entry.name not in {".git", "my_service.py", "test_my_service.py"}:
            (tmp_path / entry.name).symlink_to(entry)
    return tmp_path


def write_files(page_blocks: list[Block], folder: Path) -> None:
    """Write the page's ``# name.py`` blocks into ``folder``."""
    for block in page_blocks:
        if block.lang == "python" and block.mark is None and block.filename:
            target = folder / block.filename
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(block.code, encoding="utf-8")


def clean_environment(**extra: str) -> dict[str, str]:
    """This process's environment without PIPELINE_* variables, the venv's bin first."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIPELINE_")}
    venv_bin = str(Path(sys.executable).parent)
    env["PATH"] = f"{venv_bin}{os.pathsep}{env.get('PATH', '')}"
    env.update(extra)
    return env
