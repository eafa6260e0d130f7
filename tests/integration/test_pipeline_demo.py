"""The whole pipeline, every service as its own process, driven by ``pipeline demo``."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from pathlib import Path

from pipeline.config import Settings
from pipeline.dev.kafka import free_port
from pipeline.timeline import conversation_timeline
from tests.integration.runtime_support import SERDE

REPO = Path(__file__).resolve().parents[2]


def test_demo_runs_every_channel_through_the_live_pipeline(
    kafka_bootstrap: str, topic_prefix: str, tmp_path: Path
) -> None:
    env = {
        **os.environ,
        "PIPELINE_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "PIPELINE_TOPIC_PREFIX": topic_prefix,
        "PIPELINE_TOPIC_REPLICATION_FACTOR": "1",
    }
    command = [
        sys.executable,
        "-m",
        "pipeline",
        "demo",
        "--gateway-port",
        str(free_port()),
        "--log-dir",
        str(tmp_path / "logs"),
        "--timeout",
        "60",
    ]
    done = subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True, timeout=400)
    logs = "\n".join(
        f"--- {p.name}\n{p.read_text()[-2000:]}" for p in sorted((tmp_path / "logs").glob("*"))
    )
    assert done.returncode == 0, f"{done.stdout[-4000:]}\n{done.stderr[-2000:]}\n{logs}"
    out = done.stdout
    for expected in (
        "ok   web answer with 84",
        "ok   slack reply",
        "ok   whatsapp answer",
        "ok   email reply answered by email",
        "ok   proactive ticket message",
        "ok   follow-up timer on web",
    ):
        assert expected in out
    assert "MISS" not in out

    # The web chat's chain, read back from Kafka: one correlation id, causation links.
    settings = Settings(bootstrap_servers=kafka_bootstrap, topic_prefix=topic_prefix)
    events = [e.event for e in conversation_timeline(settings, SERDE, "web:demo:demo-web-ada")]
    kinds = [e.type for e in events]
    chain = ["message_received", "tool_called", "tool_result", "response_ready", "delivery_status"]
    first = [e for e in events if e.type in chain][: len(chain)]
    assert [e.type for e in first] == chain, kinds
    assert len({e.metadata.correlation_id for e in first}) == 1
    for cause, effect in itertools.pairwise(first):
        assert effect.metadata.causation_id == cause.id
    assert "84" in first[3]["text"]
    assert first[4]["state"] == "sent"
    # The ticket webhook and the follow-up timer also reached this conversation.
    assert "context_updated" in kinds and "timer_fired" in kinds
