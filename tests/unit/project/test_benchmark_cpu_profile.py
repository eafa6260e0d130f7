"""benchmarks/cpu_profile.py sorts py-spy samples by the innermost frame that names a cost."""

from __future__ import annotations

import sys
from pathlib import Path

# The benchmarks folder is not a package: its modules import each other by name.
sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "benchmarks"))
import cpu_profile


def test_a_sample_goes_to_its_innermost_named_cost(tmp_path: Path) -> None:
    raw = tmp_path / "agent@200.txt"
    raw.write_text(
        "process 1;thread (0x1);run (asyncio/base_events.py:1);"
        "encode (pipeline/events/serde.py:60);schemaless_writer (fastavro/_write.py:1) 7\n"
        "process 1;thread (0x1);run (asyncio/base_events.py:1);"
        "observe (prometheus_client/metrics.py:9) 2\n"
        "process 1;thread (0x1);handle (pipeline/services/agent/turns.py:3) 1\n"
        "process 1;thread (0x1);select (selectors.py:468) 3\n"
        "process 1;thread (0x1);run (asyncio/runners.py:118) 4\n"
        "process 1;thread (0x1);app (starlette/routing.py:1);parse (yaml/x.py:2) 5\n"
    )
    counts = cpu_profile.read_raw(raw)
    assert counts == {
        "serde (Avro)": 7,
        "metrics": 2,
        "runtime and handlers": 1,
        "event loop": 7,
        "HTTP server (parse, route)": 5,
    }
    text = cpu_profile.table(tmp_path)
    assert "### 200" in text
    assert "| serde (Avro) | 32% |" in text
