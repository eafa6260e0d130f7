"""``pipeline up``: every service as a supervised process, ready, and stopped cleanly."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from pipeline.dev.kafka import port_in_use
from pipeline.dev.stack.supervisor import SERVICES

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
