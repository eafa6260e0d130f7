"""Compare the schema files with an earlier version of them, and with the registry.

The earlier version comes from git: by default the last release tag (``v*``), else the
merge base with ``origin/main`` (or ``main``) when it is not the current commit, else
``HEAD~1``. Every named type present in both versions must be BACKWARD compatible
(a reader with the new schema reads data written with the old one). In registry mode
each event type's schema is also put to the registry's compatibility test against the
latest version of its subject.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.errors import SchemaError
from pipeline.events.catalog import load_expanded
from pipeline.events.compatibility import backward_problems

__all__ = ["Finding", "compare", "default_ref", "git_root", "schemas_at"]


@dataclass(frozen=True)
class Finding:
    """One schema that old readers' data cannot be read with (or a note, when not fatal)."""

    name: str
    reason: str
    fatal: bool = True


def _git(root: Path, *args: str) -> str | None:
    done = subprocess.run(
        ["git", "-C", str(root), *args], capture_output=True, text=True, check=False
    )
    return done.stdout.strip() if done.returncode == 0 else None


def git_root(start: Path) -> Path | None:
    top = _git(start if start.is_dir() else start.parent, "rev-parse", "--show-toplevel")
    return Path(top) if top else None


def default_ref(root: Path) -> tuple[str | None, str]:
    """(ref, why it was chosen); ref None when the history has nothing to compare with."""
    tag = _git(root, "describe", "--tags", "--abbrev=0", "--match", "v*", "HEAD")
    if tag:
        return tag, f"the last release tag {tag}"
    head = _git(root, "rev-parse", "HEAD")
    for main in ("origin/main", "main"):
        base = _git(root, "merge-base", main, "HEAD")
        if base and base != head:
            return base, f"the merge base with {main} ({base[:12]})"
    parent = _git(root, "rev-parse", "--verify", "--quiet", "HEAD~1^{commit}")
    if parent:
        return parent, f"the previous commit HEAD~1 ({parent[:12]})"
    return None, "no release tag, no merge base and no previous commit (a shallow clone?)"


def schemas_at(root: Path, ref: str, folders: Iterable[Path]) -> dict[str, dict[str, Any]]:
    """The schemas of ``folders`` (the first is the main one) as they were at ``ref``."""
    if _git(root, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}") is None:
        raise SchemaError(f"git ref {ref!r} is not in this repository's history")
    with tempfile.TemporaryDirectory(prefix="schemas-at-") as tmp:
        copies: list[Path] = []
        for index, folder in enumerate(folders):
            copy = Path(tmp) / str(index)
            copy.mkdir()
            copies.append(copy)
            relative = folder.resolve().relative_to(root.resolve()).as_posix()
            listing = _git(root, "ls-tree", "--name-only", f"{ref}:{relative}") or ""
            for name in listing.splitlines():
                if name.endswith(".avsc"):
                    text = _git(root, "show", f"{ref}:{relative}/{name}")
                    (copy / name).write_text(text or "", encoding="utf-8")
        return load_expanded(copies[0], copies[1:])


def compare(
    old: Mapping[str, Mapping[str, Any]], new: Mapping[str, Mapping[str, Any]]
) -> list[Finding]:
    """BACKWARD check of every named type in both; removed types are a note."""
    findings: list[Finding] = []
    for name in sorted(old.keys() | new.keys()):
        if name not in new:
            findings.append(Finding(name, "removed (its old data has no reader here)", False))
        elif name in old and json.dumps(old[name], sort_keys=True) != json.dumps(
            new[name], sort_keys=True
        ):
            findings.extend(Finding(name, p) for p in backward_problems(old[name], new[name]))
    return findings
