"""Every code block of README.md and docs/ is run or checked (see ``tests/docs_blocks.py``):
Python blocks run here, shell blocks in ``tests/integration/test_docs_shell_blocks.py``."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import click
import pytest
import yaml

from pipeline.channels.webhook.inbound import verify
from pipeline.cli import main as cli
from tests.docs_blocks import (
    LANGUAGES,
    REPO,
    Block,
    all_blocks,
    blocks,
    clean_environment,
    pages,
    workdir,
    write_files,
)

BLOCKS = all_blocks()

SKIPPED = {
    ("README.md", "starts the whole stack"),
    ("docs/getting-started.md", "starts the whole stack"),
    ("docs/own-agent.md", "starts the whole stack"),
    ("docs/testing.md", "runs the whole test suite"),
    ("docs/deploy/helm.md", "needs Docker, helm and a Kubernetes cluster"),
    ("docs/deploy/helm.md", "builds helm on first use (minutes): the deploy tier runs it"),
    ("docs/deploy/compose.md", "needs Docker"),
    ("docs/performance.md", "a benchmark (minutes of load on a broker of its own)"),
    ("docs/performance.md", "a benchmark (minutes of load)"),
    ("docs/performance.md", "a benchmark (minutes of load on a three-broker cluster)"),
}
"""The blocks not run, by page and reason: a new one changes this list, on purpose."""


def _id(block: Block) -> str:
    return block.where


def test_the_pages_have_blocks() -> None:
    assert len(pages()) > 20
    assert len(BLOCKS) > 40


def test_every_block_has_a_known_language_and_a_valid_mark() -> None:
    problems = []
    for block in BLOCKS:
        if block.lang not in LANGUAGES:
            problems.append(f"{block.where}: language {block.lang!r} (known: {sorted(LANGUAGES)})")
        if block.mark == "skip" and not block.mark_arg:
            problems.append(f"{block.where}: a skip needs a reason")
        if block.mark == "synopsis" and block.lang != "text":
            problems.append(f"{block.where}: a synopsis is a text block")
        if block.mark == "file" and not (REPO / (block.mark_arg or "")).is_file():
            problems.append(f"{block.where}: no file {block.mark_arg!r}")
    assert problems == []


def test_output_blocks_hold_no_commands_to_run() -> None:
    """A ``text`` block is shown, not run: one holding command lines must be a checked
    synopsis, or a ``bash`` block that runs."""
    command = re.compile(r"^\s*(\$ |pipeline |\.venv/|scripts/|docker |helm |export )")
    hiding = [
        block.where
        for block in BLOCKS
        if block.lang == "text" and block.mark is None
        if any(command.match(line) for line in block.code.splitlines())
    ]
    assert hiding == []


def test_the_blocks_not_run_are_the_known_few() -> None:
    skipped = {(block.page, block.mark_arg) for block in BLOCKS if block.mark == "skip"}
    assert skipped == SKIPPED


@pytest.mark.parametrize("block", [b for b in BLOCKS if b.mark == "file"], ids=_id)
def test_an_excerpt_is_in_its_file_word_for_word(block: Block) -> None:
    text = (REPO / str(block.mark_arg)).read_text(encoding="utf-8")
    assert block.code in text, f"{block.where} is not an excerpt of {block.mark_arg}"


def _command_lines(code: str) -> list[list[str]]:
    """The ``pipeline`` command lines of a synopsis, as words: comments, leading
    VAR=value assignments and the brackets of optional parts taken out."""
    found = []
    for line in code.splitlines():
        line = line.split(" # ")[0].strip()
        if not line or line.startswith("#"):
            continue
        words = [w for w in shlex.split(line) if not re.fullmatch(r"[A-Z_]+=\S*", w)]
        assert words[0] == "pipeline", line
        found.append([w.strip("[]") for w in words[1:] if w.strip("[]") not in ("", "...")])
    return found


def _check_command(words: list[str]) -> list[str]:
    """Problems with one synopsis line: an unknown command or option."""
    command: click.Command = cli
    rest = list(words)
    while isinstance(command, click.Group) and rest and not rest[0].startswith("-"):
        names = rest.pop(0).split("|")
        unknown = [n for n in names if n not in command.commands]
        if unknown:
            return [f"unknown command {unknown} in {words}"]
        command = command.commands[names[0]]
    options = {opt for param in command.params for opt in (*param.opts, *param.secondary_opts)}
    options |= {"--help"}
    return [
        f"{' '.join(words)}: unknown option {word}"
        for word in rest
        if word.startswith("-") and word != "-" and word.split("=")[0] not in options
    ]


@pytest.mark.parametrize("block", [b for b in BLOCKS if b.mark == "synopsis"], ids=_id)
def test_a_synopsis_names_real_commands_and_options(block: Block) -> None:
    problems = [p for words in _command_lines(block.code) for p in _check_command(words)]
    assert problems == []


def test_a_synopsis_check_can_fail() -> None:
    assert _check_command(["topics", "apply"]) == []
    assert _check_command(["dlq", "list", "--limit", "3"]) == []
    assert _check_command(["topics", "aply"]) != []
    assert _check_command(["dlq", "list", "--limt", "3"]) != []


@pytest.mark.parametrize(
    "block", [b for b in BLOCKS if b.lang in ("toml", "yaml", "json") and b.mark is None], ids=_id
)
def test_a_data_block_parses(block: Block) -> None:
    {"toml": tomllib.loads, "yaml": yaml.safe_load, "json": json.loads}[block.lang](block.code)


def _python_pages() -> list[Path]:
    return [
        page for page in pages() if any(b.lang == "python" and b.mark is None for b in blocks(page))
    ]


@pytest.mark.parametrize("page", _python_pages(), ids=lambda p: str(p.relative_to(REPO)))
def test_the_python_blocks_of_a_page_run(page: Path, tmp_path: Path) -> None:
    """In a folder like the repository's root: each ``# name.py`` block becomes that file;
    a test file runs under pytest, another file is imported, any other block runs as a
    script, in the page's order."""
    folder = workdir(tmp_path)
    page_blocks = [b for b in blocks(page) if b.lang == "python" and b.mark is None]
    write_files(page_blocks, folder)
    env = clean_environment(PIPELINE_METRICS_PORT="0")
    for block in page_blocks:
        name = block.filename
        if name is None:
            command = [sys.executable, "-c", block.code]
        elif Path(name).name.startswith("test_"):
            command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", name]
        else:
            module = name.removesuffix(".py").replace("/", ".")
            command = [sys.executable, "-c", f"import {module}"]
        result = subprocess.run(
            command, cwd=folder, env=env, capture_output=True, text=True, timeout=300
        )
        assert result.returncode == 0, f"{block.where}\n{result.stdout}\n{result.stderr}"
        if name is not None and Path(name).name.startswith("test_"):
            assert re.search(r"\b\d+ passed\b", result.stdout), result.stdout


def test_the_webhook_signing_example_signs_as_the_gateway_checks() -> None:
    """The ``webhook_headers`` of the tenants page, called: the gateway's own check
    accepts what it signs, and refuses it for another body."""
    [block] = [
        b
        for b in blocks(REPO / "docs" / "channels-and-tenants.md")
        if b.lang == "python" and "def webhook_headers" in b.code
    ]
    namespace: dict[str, object] = {}
    exec(compile(block.code, block.where, "exec"), namespace)
    sign = namespace["webhook_headers"]
    assert callable(sign)
    body = b'{"event": "ticket.resolved", "conversation_id": "web:acme:ada", "id": "d-1"}'
    headers = sign("whsec-zendesk", body)
    stamp, signature = headers["X-Webhook-Timestamp"], headers["X-Signature-256"]
    verify("whsec-zendesk", stamp, signature, body, now=time.time())
    with pytest.raises(Exception, match="signature"):
        verify("whsec-zendesk", stamp, signature, body + b" ", now=time.time())
