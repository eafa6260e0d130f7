"""The image's build stage without a Docker engine: the files its COPY instructions put
where, taken from the build context as Docker sends it (``.dockerignore`` applied).

The Dockerfile is parsed with ``dockerfile`` (BuildKit's own parser), and the context
is filtered with docker-py's ``exclude_paths`` (the client-side port of moby's
``.dockerignore`` matcher), so what is assembled is what ``docker build`` would see.
"""

from __future__ import annotations

import fnmatch
import shutil
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import dockerfile
from docker.utils.build import exclude_paths


@dataclass(frozen=True)
class BuildStage:
    """Where the stage installs the package from, and the COPYs that come before."""

    name: str
    install_dir: PurePosixPath
    copies: tuple[Copy, ...]


@dataclass(frozen=True)
class Copy:
    """One COPY from the context: its sources, its absolute destination, and whether the
    destination is a folder (it ends with / or takes several sources)."""

    sources: tuple[str, ...]
    dest: PurePosixPath
    into_folder: bool


def context_files(root: Path) -> set[str]:
    """Relative paths of the regular files ``docker build root`` sends, after .dockerignore."""
    ignore = root / ".dockerignore"
    patterns = [
        line.strip()
        for line in (ignore.read_text().splitlines() if ignore.exists() else [])
        if line.strip() and not line.lstrip().startswith("#")
    ]
    return {path for path in exclude_paths(str(root), patterns) if (root / path).is_file()}


def install_stage(dockerfile_text: str) -> BuildStage:
    """The stage whose RUN does ``pip install ... .``, with its WORKDIR and prior COPYs."""
    found: list[BuildStage] = []
    name, workdir = "", PurePosixPath("/")
    copies: list[Copy] = []
    for command in dockerfile.parse_string(dockerfile_text):
        if command.cmd == "FROM":
            value = command.value
            name = value[2] if len(value) > 2 and value[1].upper() == "AS" else value[0]
            workdir, copies = PurePosixPath("/"), []
        elif command.cmd == "WORKDIR":
            workdir = workdir / command.value[0]
        elif command.cmd in ("COPY", "ADD"):
            if any(flag.startswith("--from") for flag in command.flags):
                continue
            *sources, dest = command.value
            into_folder = dest.endswith("/") or len(sources) > 1
            copies.append(Copy(tuple(sources), workdir / dest, into_folder))
        elif command.cmd == "RUN" and _installs_the_package(command.value[0]):
            found.append(BuildStage(name, workdir, tuple(copies)))
    assert len(found) == 1, f"expected one RUN pip install ... . in the Dockerfile, found {found}"
    return found[0]


def assemble(root: Path, stage: BuildStage, into: Path) -> Path:
    """Lay out the stage's files under ``into`` (as ``/``); returns its install folder.

    Raises FileNotFoundError for a COPY source that is not in the context, as
    ``docker build`` fails with "not found".
    """
    files = context_files(root)
    for copy in stage.copies:
        for source in copy.sources:
            _copy(root, files, source.rstrip("/"), copy, into)
    return into / stage.install_dir.relative_to("/")


def _copy(root: Path, files: set[str], source: str, copy: Copy, into: Path) -> None:
    matched = sorted(f for f in files if fnmatch.fnmatch(f, source) or f.startswith(f"{source}/"))
    if not matched:
        raise FileNotFoundError(f"COPY {source}: not in the build context (.dockerignore?)")
    dest = copy.dest
    as_folder = copy.into_folder or len(matched) > 1 or matched[0] != source
    for path in matched:
        if path == source or fnmatch.fnmatch(path, source):
            relative = PurePosixPath(PurePosixPath(path).name)
        else:
            relative = PurePosixPath(path).relative_to(source)
        target = dest / relative if as_folder else dest
        out = into / str(target).lstrip("/")
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / path, out)


def _installs_the_package(run: str) -> bool:
    words = run.replace("\\", " ").split()
    return any(
        words[i : i + 2] == ["pip", "install"] and "." in words[i + 2 :]
        for i in range(len(words) - 1)
    )
