"""The shell blocks of README.md and docs/ run against a real broker, as a reader would
run them one after another in one terminal (see ``tests/docs_blocks.py``).

Each page runs in a folder like the repository's root with ``.venv/bin`` on ``PATH``,
``PIPELINE_BOOTSTRAP_SERVERS`` naming the test broker, a topic prefix of its own and one
replica. What one block exports and where it ``cd``-ed carry over to the next; after
each block the ``PIPELINE_*`` variables it left must be valid settings. Background jobs
a block leaves are stopped when it ends.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient

from tests.docs_blocks import REPO, Block, blocks, clean_environment, pages, workdir, write_files

CHECK_SETTINGS = "python -c 'from pipeline.config import load_settings; load_settings()'"

_RUN = """set -euo pipefail
trap 'jobs -p | xargs -r kill 2>/dev/null || true' EXIT
source {env_file}
cd {cwd}
{code}
{check}
export -p > {env_file}
pwd > {cwd_file}
"""


EXPECTED_OUTPUT = {
    "README.md": '"text": "hi"',
    "docs/getting-started.md": '"text": "hi"',
    "docs/own-agent.md": "Thank you for order A-1001 (45.99 EUR).",
    "docs/topics.md": "message_received",
    "docs/events.md": "order_id",
}
"""What a page's blocks must have printed: the answer the walk-through waits for."""


def _shell(page: Path) -> list[Block]:
    return [b for b in blocks(page) if b.lang == "bash" and b.mark is None]


def _shell_pages() -> list[Path]:
    return [page for page in pages() if _shell(page)]


@pytest.mark.parametrize("page", _shell_pages(), ids=lambda p: str(p.relative_to(REPO)))
def test_the_shell_blocks_of_a_page_run(
    page: Path, tmp_path: Path, kafka_bootstrap: str, topic_prefix: str, admin: AdminClient
) -> None:
    folder = workdir(tmp_path / "root")
    page_blocks = [b for b in blocks(page) if b.mark is None]
    write_files(page_blocks, folder)
    state = tmp_path / "state"
    state.mkdir()
    env_file, cwd_file = state / "env.sh", state / "cwd"
    env_file.write_text("")
    cwd_file.write_text(str(folder))
    env = clean_environment(
        PIPELINE_BOOTSTRAP_SERVERS=kafka_bootstrap,
        PIPELINE_TOPIC_PREFIX=topic_prefix,
        PIPELINE_TOPIC_REPLICATION_FACTOR="1",
        PIPELINE_METRICS_PORT="0",
    )
    printed = []
    try:
        for block in _shell(page):
            script = _RUN.format(
                env_file=env_file,
                cwd=f'"{cwd_file.read_text().strip()}"',
                code=block.code,
                check=CHECK_SETTINGS,
                cwd_file=cwd_file,
            )
            result = subprocess.run(
                ["bash", "-c", script],
                env=env,
                capture_output=True,
                text=True,
                timeout=300,
                stdin=subprocess.DEVNULL,
            )
            assert result.returncode == 0, (
                f"{block.where} exited {result.returncode}\n{result.stdout}\n{result.stderr}"
            )
            printed.append(result.stdout)
        expected = EXPECTED_OUTPUT.get(str(page.relative_to(REPO)), "")
        assert expected in "".join(printed)
    finally:
        ours = [t for t in admin.list_topics(timeout=10).topics if t.startswith(topic_prefix)]
        if ours:
            for future in admin.delete_topics(ours, operation_timeout=30).values():
                future.result()


def test_a_failing_block_fails_the_page(tmp_path: Path) -> None:
    """The way blocks are run stops at the first failing command of a block."""
    script = _RUN.format(
        env_file=tmp_path / "env",
        cwd=f'"{tmp_path}"',
        code="false\ntrue",
        check="true",
        cwd_file=tmp_path / "cwd",
    )
    (tmp_path / "env").write_text("")
    result = subprocess.run(["bash", "-c", script], capture_output=True, timeout=30)
    assert result.returncode != 0
