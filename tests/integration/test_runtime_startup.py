"""``pipeline run`` refuses, at start, a service whose event types do not exist."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from pipeline.config import bundled_dir
from pipeline.events.catalog import SchemaCatalog

TYPO_SERVICE = textwrap.dedent(
    """
    from pipeline import Context, Event, Service

    service = Service("typo", emits=["response_ready"])


    @service.handler("mesage_received")
    async def echo(event: Event, ctx: Context) -> None:
        ctx.emit("response_ready", {"reply_to": event["reply_to"], "text": event["text"]})
    """
)


def test_an_unknown_handled_type_exits_non_zero_listing_the_known_types(
    kafka_bootstrap: str, topic_prefix: str, tmp_path: Path
) -> None:
    (tmp_path / "typo_service.py").write_text(TYPO_SERVICE)
    env = {
        **os.environ,
        "PYTHONPATH": str(tmp_path),
        "PIPELINE_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "PIPELINE_TOPIC_PREFIX": topic_prefix,
        "PIPELINE_METRICS_PORT": "0",
    }
    result = subprocess.run(
        [sys.executable, "-m", "pipeline", "run", "typo_service:service"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    known = ", ".join(SchemaCatalog.load(bundled_dir("schemas")).event_types)
    [line] = [line for line in result.stderr.splitlines() if "cannot start" in line]
    assert "cannot start: service typo handles 'mesage_received' (no schema and no topic" in line
    assert line.endswith(f"known event types: {known}")
    assert "Traceback" not in result.stderr
