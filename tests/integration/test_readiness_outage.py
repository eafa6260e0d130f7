"""A broker outage under running services: what the probes and the logs say.

The test runs its own broker (data kept across the restart) so it can stop it: never
the shared one. The echo service and the gateway run as `pipeline run` processes.
While the broker is down the consumer's /readyz goes 503 (after
PIPELINE_BROKER_DOWN_NOT_READY_SECONDS) and comes back by itself once the group is
stable again; the gateway stays ready ("degraded") and answers 503 with Retry-After;
each service logs one WARNING when Kafka is gone and one INFO when it is back, and no
librdkafka FAIL lines.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from pipeline.config import Settings
from pipeline.dev.kafka import DevKafka, free_port
from pipeline.topology import admin_client, apply, load_settings_topology
from tests.environment import environment_without_settings

DOWN_LIMIT_SECONDS = 2


def _probe(port: int) -> tuple[int, dict[str, Any]]:
    try:
        response = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2)
    except httpx.HTTPError as exc:
        return 0, {"reason": f"no answer: {exc}"}
    return response.status_code, response.json()


def _until(
    what: str, check: Callable[[], tuple[bool, object]], seconds: float, logs: Path
) -> float:
    """Poll ``check`` until it holds; returns how long that took."""
    started = time.monotonic()
    last: object = None
    while time.monotonic() - started < seconds:
        ok, last = check()
        if ok:
            return time.monotonic() - started
        time.sleep(0.2)
    tails = {p.name: p.read_text()[-3000:] for p in logs.glob("*.log")}
    raise AssertionError(f"{what} within {seconds}s; last answer {last}; logs {tails}")


def _post(gateway_port: int) -> httpx.Response:
    return httpx.post(
        f"http://127.0.0.1:{gateway_port}/v1/web/messages",
        json={"user_id": "u1", "text": "hello", "callback_url": "http://127.0.0.1:9/cb"},
        headers={"Authorization": "Bearer tok-acme"},
        timeout=15,
    )


def test_probes_and_logs_through_a_broker_outage(
    stoppable_broker: DevKafka, tmp_path: Path, topic_prefix: str
) -> None:
    broker = stoppable_broker
    settings = Settings(
        bootstrap_servers=broker.bootstrap_servers,
        topic_prefix=topic_prefix,
        topic_replication_factor=1,
    )
    apply(admin_client(settings), load_settings_topology(settings), settings)

    echo_metrics, gateway_metrics, gateway_port = free_port(), free_port(), free_port()
    base = environment_without_settings()
    base |= {
        "PIPELINE_BOOTSTRAP_SERVERS": broker.bootstrap_servers,
        "PIPELINE_TOPIC_PREFIX": topic_prefix,
        "PIPELINE_METRICS_HOST": "127.0.0.1",
        "PIPELINE_BROKER_DOWN_NOT_READY_SECONDS": str(DOWN_LIMIT_SECONDS),
        # A member that lost the coordinator is replaced sooner: the test waits less.
        "PIPELINE_CONSUMER__SESSION_TIMEOUT_MS": "10000",
    }
    runs = {
        "echo": base | {"PIPELINE_METRICS_PORT": str(echo_metrics)},
        "gateway": base
        | {
            "PIPELINE_METRICS_PORT": str(gateway_metrics),
            "PIPELINE_GATEWAY__HOST": "127.0.0.1",
            "PIPELINE_GATEWAY__PORT": str(gateway_port),
            "PIPELINE_GATEWAY__WEB_TOKENS": json.dumps({"acme": "tok-acme"}),
            "PIPELINE_GATEWAY__PUBLISH_TIMEOUT_SECONDS": "2",
        },
    }
    processes = {}
    for name, env in runs.items():
        with (tmp_path / f"{name}.log").open("wb") as log:
            processes[name] = subprocess.Popen(
                [sys.executable, "-m", "pipeline", "run", name],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
    try:
        echo_ready = lambda: ((s := _probe(echo_metrics))[0] == 200, s)  # noqa: E731
        _until("echo ready", echo_ready, 90, tmp_path)
        _until("gateway ready", lambda: (_probe(gateway_metrics)[0] == 200, None), 60, tmp_path)
        assert _post(gateway_port).status_code == 202

        broker.stop()

        # The consumer: not ready, saying why, once the outage outlasts the setting.
        def echo_not_ready() -> tuple[bool, object]:
            status, body = _probe(echo_metrics)
            return status == 503 and "unreachable" in body["reason"], (status, body)

        _until("echo not ready during the outage", echo_not_ready, 60, tmp_path)

        # The gateway: still ready, degraded, and its clients get 503 with Retry-After.
        def gateway_degraded() -> tuple[bool, object]:
            status, body = _probe(gateway_metrics)
            return status == 200 and body["reason"].startswith("degraded"), (status, body)

        _until("gateway degraded", gateway_degraded, 30, tmp_path)
        public = httpx.get(f"http://127.0.0.1:{gateway_port}/readyz", timeout=2)
        assert (public.status_code, public.json()["reason"]) == (200, "degraded")
        refused = _post(gateway_port)
        assert refused.status_code == 503, refused.text
        assert int(refused.headers["Retry-After"]) > 0
        assert all(p.poll() is None for p in processes.values())  # liveness: still running
        assert httpx.get(f"http://127.0.0.1:{echo_metrics}/healthz", timeout=2).status_code == 200

        broker.start()
        back = _until("echo ready again", echo_ready, 120, tmp_path)
        _until(
            "gateway no longer degraded",
            lambda: ((s := _probe(gateway_metrics))[1]["reason"] == "Kafka reachable", s),
            60,
            tmp_path,
        )
        assert _post(gateway_port).status_code == 202
        print(f"echo ready again {back:.1f}s after the broker started")
    finally:
        for process in processes.values():
            process.terminate()
        for process in processes.values():
            process.wait(60)

    for name in runs:
        log = (tmp_path / f"{name}.log").read_text()
        assert log.count("is unreachable") == 1, f"{name}:\n{log[-5000:]}"
        assert log.count("is reachable again after") == 1, f"{name}:\n{log[-5000:]}"
        assert "FAIL" not in log and "Traceback" not in log, f"{name}:\n{log[-5000:]}"
        print(f"{name}: {len(log.splitlines())} log lines through the outage")
