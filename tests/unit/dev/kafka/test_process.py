"""The broker's process handling, with a Python stand-in for the JVM (no Java needed)."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.dev.kafka.process import BrokerProcess, pid_alive, read_pid

# Sleeps until killed; on SIGTERM it says so and sleeps on, like a broker slow to stop.
# Its arguments carry what is_broker_process looks for in a broker's command line.
STUBBORN = """
import signal, sys, time
def said(*_):
    print("got SIGTERM", flush=True)
signal.signal(signal.SIGTERM, said)
print("ready", flush=True)
time.sleep(120)
"""


@pytest.fixture
def process(tmp_path: Path) -> Iterator[BrokerProcess]:
    process = BrokerProcess(tmp_path / "broker.pid", tmp_path / "server.properties")
    yield process
    process.kill()  # whatever a failed test left running


def _spawn(process: BrokerProcess, tmp_path: Path, script: str) -> Path:
    out = tmp_path / "broker.out"
    cmd = [sys.executable, "-c", script, "kafka.Kafka", str(process.server_properties)]
    process.spawn(cmd, out, cwd=tmp_path)
    deadline = time.monotonic() + 30
    while "ready" not in out.read_text() and time.monotonic() < deadline:
        time.sleep(0.01)
    return out


def test_a_spawned_process_is_found_by_its_pid_file(process: BrokerProcess, tmp_path: Path) -> None:
    assert process.pid() is None and not process.alive()
    _spawn(process, tmp_path, "print('ready', flush=True); import time; time.sleep(120)")
    pid = read_pid(process.pid_file)
    assert pid is not None and process.pid() == pid
    assert process.is_running() and process.alive() and process.exit_code() is None

    # Another object, as in a later command, finds the same process from the pid file.
    later = BrokerProcess(process.pid_file, process.server_properties)
    assert later.pid() == pid
    assert BrokerProcess(process.pid_file, tmp_path / "other.properties").pid() is None

    assert process.kill()
    assert not pid_alive(pid)  # killed and reaped: not even a zombie
    assert not process.pid_file.exists()
    assert process.kill() is False and process.stop(1.0) is False


def test_stop_sends_sigterm_then_sigkill_after_the_timeout(
    process: BrokerProcess, tmp_path: Path
) -> None:
    out = _spawn(process, tmp_path, STUBBORN)
    pid = process.pid()
    assert pid is not None

    started = time.monotonic()
    assert process.stop(timeout=0.5)
    assert time.monotonic() - started >= 0.5
    assert "got SIGTERM" in out.read_text()
    assert not pid_alive(pid)
    assert not process.pid_file.exists()


def test_the_exit_code_of_a_process_that_ended(process: BrokerProcess, tmp_path: Path) -> None:
    _spawn(process, tmp_path, "print('ready', flush=True); raise SystemExit(7)")
    deadline = time.monotonic() + 30
    while process.alive() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert process.exit_code() == 7
    assert process.stop(1.0) is False  # not running; the child is reaped
