"""benchmarks/stream_latency.py, run briefly at a tiny rate with short answers so that it
cannot rot.

A smoke test of the benchmark, not a measurement: every turn is answered in both modes,
the answers are the model's, streamed answers came in deltas that begin their answer,
and the report has its parts. It asserts no latency figure.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.integration.runtime_support import REPO


def test_the_stream_benchmark_runs_end_to_end_at_a_tiny_rate(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    out = tmp_path / "streams.json"
    subprocess.run(
        [
            sys.executable,
            str(REPO / "benchmarks" / "stream_latency.py"),
            "--bootstrap",
            kafka_bootstrap,
            "--rates",
            "3",
            "--seconds",
            "1",
            "--tokens",
            "20",
            "--tokens-per-second",
            "20",
            "--warmup-seconds",
            "1",
            "--json",
            str(out),
        ],
        check=True,
        timeout=240,
        cwd=REPO,
    )
    outcome = json.loads(out.read_text())
    rows = {row["mode"]: row for row in outcome["results"]}
    assert set(rows) == {"streaming", "without streaming"}
    for row in rows.values():
        assert (row["sent"], row["answered"], row["refused"]) == (3, 3, 0), row
        assert row["wrong_answers"] == 0, row
        assert 0 < row["first_text_after_send_ms"]["p50"] <= row["first_text_after_send_ms"]["p99"]
    streamed, whole = rows["streaming"], rows["without streaming"]
    assert streamed["deltas_per_answer"]["mean"] > 1
    assert streamed["previews_not_the_answer"] == 0
    assert streamed["first_delta_after_model_first_ms"]["p50"] >= 0
    assert set(streamed["hops_ms"]) == {
        "first word to delta record",
        "delta record to browser",
        "last word to answer record",
        "answer record to browser",
    }
    assert whole["deltas_per_answer"]["max"] == 0
    assert "without streaming the first text arrives" in outcome["report"]
