"""``pipeline up``: every service as a supervised process, ready, and stopped cleanly; its
terminal says when a service loses Kafka and has it back, and which port is taken."""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from pipeline.dev.kafka import DevKafka, free_port, port_in_use
from pipeline.dev.stack.supervisor import SERVICES
from tests.environment import environment_without_settings

REPO = Path(__file__).resolve().parents[2]


def test_up_starts_every_service_restarts_a_killed_one_and_stops_on_sigterm(
    kafka_bootstrap: str, topic_prefix: str, tmp_path: Path
) -> None:
    # Below Linux's ephemeral range, so no outgoing connection takes one meanwhile.
    base = random.randrange(20000, 30000, 10)
    while any(port_in_use(base + i) for i in range(len(SERVICES) + 2)):
        base = random.randrange(20000, 30000, 10)
    gateway = base + len(SERVICES)
    env = {
        **os.environ,
        "PIPELINE_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "PIPELINE_TOPIC_PREFIX": topic_prefix,
        "PIPELINE_TOPIC_REPLICATION_FACTOR": "1",
        "PIPELINE_GATEWAY__PORT": str(gateway),
        "PIPELINE_CONSOLE__PORT": str(gateway + 1),
        # Ready means a stable group: a killed member's partitions move once its session
        # times out, so keep that short here (the default is 45 s).
        "PIPELINE_CONSUMER__SESSION_TIMEOUT_MS": "6000",
        "PIPELINE_CONSUMER__HEARTBEAT_INTERVAL_MS": "500",
    }
    up = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pipeline",
            "up",
            "--metrics-base-port",
            str(base),
            "--log-dir",
            str(tmp_path),
        ],
        env=env,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        ports = {name: base + i for i, name in enumerate(SERVICES)}
        assert _all_ready(ports, 120), f"not every service became ready: {_logs(tmp_path)}"
        # Kill one service behind the supervisor's back: it comes back.
        tools_pid = _child(up.pid, "tools")
        os.kill(tools_pid, signal.SIGKILL)
        time.sleep(1)
        assert _all_ready(ports, 60), "the killed service did not come back"
        assert _child(up.pid, "tools") != tools_pid
    finally:
        up.send_signal(signal.SIGTERM)
        output, _ = up.communicate(timeout=90)
    assert up.returncode == 0, output
    assert "stopped:" in output
    assert "chat in your browser: http://127.0.0.1:" in output and "/chat#token=v1." in output
    assert {name: 0 for name in SERVICES}.items() <= _codes(output).items(), output


def _all_ready(ports: dict[str, int], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if all(
                httpx.get(f"http://127.0.0.1:{p}/readyz", timeout=1).status_code == 200
                for p in ports.values()
            ):
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    return False


def _child(parent: int, service: str) -> int:
    """The pid of ``pipeline run SERVICE`` started by ``parent`` (read from /proc)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except (OSError, IndexError, ValueError):
            continue
        if ppid == parent and argv[-3:-1] == [b"run", service.encode()]:
            return int(entry.name)
    raise AssertionError(f"no {service} process under {parent}")


def _codes(output: str) -> dict[str, int]:
    line = next(line for line in output.splitlines() if line.startswith("stopped:"))
    pairs = line.removeprefix("stopped:").strip().strip("{}").split(",")
    codes = {}
    for pair in pairs:
        name, _, code = pair.partition(":")
        codes[name.strip().strip("'")] = int(code) if code.strip() != "None" else -1
    return codes


def _logs(folder: Path) -> str:
    return "\n".join(f"--- {p.name}\n{p.read_text()[-1500:]}" for p in sorted(folder.glob("*.log")))


def _up(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "pipeline", "up", *args],
        env=env,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
    )


class _Lines:
    """The lines a process prints, read on a thread of their own as they come."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        self._process = process
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self._process.stdout is not None
        for line in self._process.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, wanted: Callable[[list[str]], bool], seconds: float) -> float:
        """Seconds until ``wanted`` holds of the lines printed so far."""
        started = time.monotonic()
        while time.monotonic() - started < seconds:
            if wanted(list(self.lines)):
                return time.monotonic() - started
            time.sleep(0.1)
        raise AssertionError(f"not within {seconds}s; printed:\n" + "\n".join(self.lines))

    def finish(self) -> str:
        self._reader.join(10)
        assert self._process.stdout is not None
        self._process.stdout.close()
        return "\n".join(self.lines)


def test_up_says_in_its_terminal_when_each_service_loses_kafka_and_has_it_back(
    stoppable_broker: DevKafka, topic_prefix: str, tmp_path: Path
) -> None:
    services = ("gateway", "echo", "scheduler")
    base = free_port()
    env = {
        **environment_without_settings(),
        "PIPELINE_BOOTSTRAP_SERVERS": stoppable_broker.bootstrap_servers,
        "PIPELINE_TOPIC_PREFIX": topic_prefix,
        "PIPELINE_TOPIC_REPLICATION_FACTOR": "1",
    }
    options = [f"--only={name}" for name in services]
    options += ["--metrics-base-port", str(base), "--log-dir", str(tmp_path / "logs")]
    options += ["--gateway-port", str(free_port()), "--console-port", str(free_port())]
    up = _up(env, *options)
    printed = _Lines(up)
    try:
        printed.wait_for(lambda lines: any(line.startswith("up: gateway") for line in lines), 120)
        stoppable_broker.stop()
        lost = printed.wait_for(
            lambda lines: all(
                any(f"up: {s}: lost Kafka" in line for line in lines) for s in services
            ),
            15,
        )
        stoppable_broker.start()
        back = printed.wait_for(
            lambda lines: all(
                any(f"up: {s}: Kafka at" in line and "is back" in line for line in lines)
                for s in services
            ),
            60,
        )
        print(f"every service's loss printed {lost:.1f}s after the stop, recovery {back:.1f}s")
    finally:
        up.send_signal(signal.SIGTERM)
        up.wait(90)
    output = printed.finish()
    for service in services:
        assert output.count(f"up: {service}: lost Kafka") == 1, output
        assert output.count(f"up: {service}: Kafka at") == 1, output


def test_up_names_a_taken_port_and_the_option_that_moves_it(kafka_bootstrap: str) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {**environment_without_settings(), "PIPELINE_BOOTSTRAP_SERVERS": kafka_bootstrap}
        started = time.monotonic()
        result = subprocess.run(
            [sys.executable, "-m", "pipeline", "up", "--only=gateway", "--gateway-port", str(port)],
            env=env,
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode != 0
    assert f"port {port} (the gateway's port) is in use" in result.stderr, result.stderr
    assert "pick another port with --gateway-port" in result.stderr
    assert "restarting" not in result.stdout + result.stderr
    assert time.monotonic() - started < 30
