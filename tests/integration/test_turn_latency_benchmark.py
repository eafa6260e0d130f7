"""benchmarks/turn_latency.py, run briefly at a tiny rate so that it cannot rot.

A smoke test of the benchmark, not a measurement: it checks that every turn went through
the pipeline and the relay, that the report has its parts, and that the services stopped
on SIGTERM. It asserts no latency figure.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from pipeline.dev.stack.supervisor import SERVICES
from tests.integration.runtime_support import REPO


def test_the_benchmark_runs_end_to_end_at_a_tiny_rate(kafka_bootstrap: str, tmp_path: Path) -> None:
    out = tmp_path / "turns.json"
    subprocess.run(
        [
            sys.executable,
            str(REPO / "benchmarks" / "turn_latency.py"),
            "--bootstrap",
            kafka_bootstrap,
            "--rates",
            "4",
            "--seconds",
            "2",
            "--warmup-seconds",
            "1",
            "--idle-seconds",
            "1",
            "--grace",
            "20",
            "--drain-load-seconds",
            "1",
            "--json",
            str(out),
        ],
        check=True,
        timeout=120,
        cwd=REPO,
    )
    outcome = json.loads(out.read_text())
    rows = {row["side"]: row for row in outcome["results"]}
    assert set(rows) == {"pipeline", "relay"}
    for row in rows.values():
        assert row["sent"] == 8
        assert row["delivered"] == 8, row
        assert row["send_failures"] == 0
        assert 0 < row["p50_ms"] <= row["p99_ms"] <= row["max_ms"]
        assert set(row["hops_ms"]) == {"ingress", "agent", "tools", "agent (2)", "delivery"}
    pipeline = rows["pipeline"]
    assert all(hop["p50"] >= 0 for hop in pipeline["hops_ms"].values())
    assert 0 < pipeline["accepted_ms"]["p50"] <= pipeline["accepted_ms"]["p99"]
    started = [s for s in SERVICES if s in pipeline["cpu_ms_per_turn"]]
    assert started == ["gateway", "agent", "tools", "delivery"]
    assert set(outcome["idle_cpu_share"]) == set(started)
    exits = outcome["drain"]["exits"]
    assert {name: e["code"] for name, e in exits.items()} == dict.fromkeys(started, 0)
    assert "highest rate with every turn delivered" in outcome["report"]


def test_the_benchmark_runs_with_a_thinking_model_and_two_agents(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    out = tmp_path / "turns.json"
    subprocess.run(
        [
            sys.executable,
            str(REPO / "benchmarks" / "turn_latency.py"),
            "--bootstrap",
            kafka_bootstrap,
            "--rates",
            "4",
            "--seconds",
            "2",
            "--warmup-seconds",
            "1",
            "--idle-seconds",
            "1",
            "--grace",
            "20",
            "--model-latency",
            "0.2",
            "--instances",
            "agent=2",
            "--no-relay",
            "--no-drain-check",
            "--json",
            str(out),
        ],
        check=True,
        timeout=180,
        cwd=REPO,
    )
    outcome = json.loads(out.read_text())
    [row] = outcome["results"]
    assert row["side"] == "pipeline"
    assert row["delivered"] == row["sent"] == 8, row
    # Two model calls of 0.2 s each are in every turn.
    assert row["p50_ms"] >= 400
    assert set(row["cpu_ms_per_turn"]) == {"gateway", "agent", "agent#2", "tools", "delivery"}
    assert "p99 < 700 ms" in outcome["report"]
