"""A user's mistake is one line on stderr and a non-zero exit, never a traceback.

The cluster here is 127.0.0.1:1, where nothing listens: librdkafka reports every broker
down at once, so each command gives up in about a second, naming the servers.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from pipeline.cli import main
from tests.environment import environment_without_settings

NOWHERE = "127.0.0.1:1"


pytestmark = pytest.mark.usefixtures("no_pipeline_settings")


def _run(*args: str, stdin: str | None = None, **env: str) -> Result:
    return CliRunner().invoke(main, list(args), env=env, input=stdin)


def _one_line(result: Result) -> str:
    assert "Traceback" not in result.output, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.mark.parametrize(
    "args",
    [
        ("tail", "message_received", "--max-events", "1"),
        ("timeline", "web:acme:u1"),
        ("produce", "message_received", "-c", "web:acme:u1", "--timeout", "5"),
        ("topics", "apply", "--timeout", "5"),
        ("topics", "check", "--timeout", "5"),
    ],
    ids=lambda args: " ".join(args[:2]),
)
def test_an_unreachable_cluster_is_one_line_naming_the_servers(args: tuple[str, ...]) -> None:
    stdin = None
    if args[0] == "produce":  # a valid body, so that only the cluster is wrong
        stdin = _run("events", "show", "message_received", "--example").stdout
    started = time.monotonic()
    result = _run(*args, stdin=stdin, PIPELINE_BOOTSTRAP_SERVERS=NOWHERE)
    assert result.exit_code == 2, result.output
    line = _one_line(result)
    assert f"Kafka at {NOWHERE} is unreachable" in line
    assert "PIPELINE_BOOTSTRAP_SERVERS" in line
    assert time.monotonic() - started < 5  # all brokers down: no need to wait the timeout


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        (
            "PIPELINE_MAX_IN_FLIGHT",
            "-1",
            "error: invalid setting PIPELINE_MAX_IN_FLIGHT: Input should be greater than or "
            "equal to 1",
        ),
        (
            "PIPELINE_MAX_INFLIGHT",
            "5",
            "error: invalid setting PIPELINE_MAX_INFLIGHT: unknown variable; did you mean "
            "PIPELINE_MAX_IN_FLIGHT?",
        ),
        (
            "PIPELINE_GATEWAY__PROT",
            "8080",
            "error: invalid setting PIPELINE_GATEWAY__PROT: unknown variable; did you mean "
            "PIPELINE_GATEWAY__PORT?",
        ),
        (
            "PIPELINE_KAFKA__NO_SUCH_SETTING",
            "1",
            "error: invalid setting PIPELINE_KAFKA__NO_SUCH_SETTING: librdkafka has no setting "
            "'no.such.setting'",
        ),
        (
            "PIPELINE_AUTO_OFFSET_RESET",
            "newest",
            "error: invalid setting PIPELINE_AUTO_OFFSET_RESET: Input should be 'earliest' or "
            "'latest'",
        ),
    ],
)
@pytest.mark.parametrize(
    "args", [("run", "echo"), ("topics", "list"), ("tail", "x"), ("events",)], ids=" ".join
)
def test_a_bad_setting_is_one_line_in_one_format_for_every_command(
    args: tuple[str, ...], variable: str, value: str, expected: str
) -> None:
    result = _run(*args, **{variable: value})
    assert result.exit_code == 2, result.output
    assert _one_line(result).startswith(expected)


def test_variables_of_the_tools_are_not_settings_but_allowed() -> None:
    result = _run(
        "topics",
        "list",
        PIPELINE_DEVKAFKA_CACHE="/tmp/x",
        PIPELINE_TOOLS_DIR="/tmp/y",
        PIPELINE_CI_KAFKA_PORT="9092",
    )
    assert result.exit_code == 0, result.output


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def _pipeline(tmp_path: Path, *args: str, **env: str) -> subprocess.Popen[str]:
    clean = environment_without_settings()
    return subprocess.Popen(
        [sys.executable, "-m", "pipeline", *args],
        env=clean | env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=tmp_path,
    )


def test_a_metrics_port_in_use_is_one_line_naming_the_setting(
    tmp_path: Path, busy_port: int
) -> None:
    for service in ("echo", "gateway"):
        process = _pipeline(
            tmp_path,
            "run",
            service,
            PIPELINE_BOOTSTRAP_SERVERS=NOWHERE,
            PIPELINE_METRICS_HOST="127.0.0.1",
            PIPELINE_METRICS_PORT=str(busy_port),
            PIPELINE_GATEWAY__PORT="0",
        )
        output, _ = process.communicate(timeout=60)
        assert process.returncode == 2, output
        assert "Traceback" not in output
        [line] = [line for line in output.splitlines() if "ERROR" in line]
        assert f"PIPELINE_METRICS_PORT: port {busy_port} on 127.0.0.1 is already in use" in line


def test_run_against_an_unreachable_cluster_says_so_once(tmp_path: Path) -> None:
    process = _pipeline(
        tmp_path, "run", "echo", PIPELINE_BOOTSTRAP_SERVERS=NOWHERE, PIPELINE_METRICS_PORT="0"
    )
    assert process.stdout is not None
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 30
        while not any("is unreachable" in line for line in lines):
            assert time.monotonic() < deadline, lines
            lines.append(process.stdout.readline())
        # librdkafka retries the connection several times a second meanwhile.
        time.sleep(3)
    finally:
        process.terminate()
        rest, _ = process.communicate(timeout=60)
    lines += rest.splitlines()
    assert process.returncode == 0, lines
    assert sum("is unreachable" in line for line in lines) == 1, lines
    assert not any("FAIL" in line or "Traceback" in line for line in lines), lines
    assert len([line for line in lines if line.strip()]) <= 4, lines  # start, warning, stop
