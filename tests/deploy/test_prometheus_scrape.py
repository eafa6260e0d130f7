"""A real Prometheus (Debian's package) scraping real services on the session's broker:
every target is up, the alert rules load, and every metric name that the dashboard and
the alert rules use is exported by a running service."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from confluent_kafka import Producer
from deploy_support import RULES, dashboard_exprs, metric_names, rule_exprs

HERE = Path(__file__).parent
DEADLINE = 120.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def wait_for(
    what: str, check: Callable[[], bool], logs: list[Path], timeout: float = DEADLINE
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.5)
    tails = "\n".join(f"--- {log.name}\n{log.read_text()[-3000:]}" for log in logs if log.exists())
    pytest.fail(f"timed out waiting for {what}\n{tails}")


@contextlib.contextmanager
def started(args: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        process = subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            yield process
        finally:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def message(text: str) -> str:
    return json.dumps(
        {
            "channel": "web",
            "sender_id": "user-1",
            "sender_name": None,
            "text": text,
            "reply_to": {"channel": "web", "address": "user-1", "thread_id": None},
            "external_id": None,
            "attachments": [],
            "attributes": {},
        }
    )


@pytest.mark.integration
def test_prometheus_scrapes_every_service(
    kafka_bootstrap: str, prometheus: str, tmp_path: Path
) -> None:
    prefix = f"scrape-{uuid.uuid4().hex[:8]}."
    env = {
        **os.environ,
        "PIPELINE_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "PIPELINE_TOPIC_PREFIX": prefix,
        "PIPELINE_TOPIC_REPLICATION_FACTOR": "1",
        "PIPELINE_MAX_RETRIES": "1",
        "PIPELINE_RETRY_BACKOFF_INITIAL_SECONDS": "0.05",
        "PIPELINE_DRAIN_TIMEOUT_SECONDS": "5",
        "PIPELINE_LOG_LEVEL": "INFO",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")])),
    }
    pipeline = [sys.executable, "-m", "pipeline"]
    applied = subprocess.run(
        [*pipeline, "topics", "apply"], env=env, capture_output=True, text=True, timeout=120
    )
    assert applied.returncode == 0, applied.stdout + applied.stderr

    services = {"echo": "echo", "flaky": "scrape_services:build_flaky"}
    ports = {name: free_port() for name in services}
    logs = [tmp_path / f"{name}.log" for name in services] + [tmp_path / "prometheus.log"]
    with contextlib.ExitStack() as stack:
        for name, spec in services.items():
            service_env = {
                **env,
                "PIPELINE_SERVICE_NAME": name,
                "PIPELINE_METRICS_PORT": str(ports[name]),
            }
            stack.enter_context(
                started([*pipeline, "run", spec], service_env, tmp_path / f"{name}.log")
            )
        for name, port in ports.items():
            wait_for(
                f"{name} /readyz", lambda p=port: answers(f"http://127.0.0.1:{p}/readyz"), logs
            )

        # Good messages, one that the flaky service fails on, and bytes nobody can decode.
        for i, text in enumerate(["hello", "how are you", "fail please", "bye"]):
            produced = subprocess.run(
                [*pipeline, "produce", "message_received", message(text), "-c", f"conv-{i}"],
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert produced.returncode == 0, produced.stdout + produced.stderr
        producer = Producer({"bootstrap.servers": kafka_bootstrap})
        producer.produce(f"{prefix}message_received", key=b"conv-garbage", value=b"not avro")
        assert producer.flush(30) == 0

        prom_port = free_port()
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(RULES)],
            "scrape_configs": [
                {
                    "job_name": "pipeline",
                    "honor_labels": True,
                    "static_configs": [
                        {"targets": [f"127.0.0.1:{port}"], "labels": {"service": name}}
                        for name, port in ports.items()
                    ],
                }
            ],
        }
        (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
        stack.enter_context(
            started(
                [
                    prometheus,
                    f"--config.file={tmp_path / 'prometheus.yml'}",
                    f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                    f"--web.listen-address=127.0.0.1:{prom_port}",
                ],
                dict(os.environ),
                tmp_path / "prometheus.log",
            )
        )
        api = f"http://127.0.0.1:{prom_port}/api/v1"
        wait_for("Prometheus", lambda: answers(f"http://127.0.0.1:{prom_port}/-/ready"), logs)

        def targets_up() -> bool:
            targets = get_json(f"{api}/targets")["data"]["activeTargets"]
            return len(targets) == len(services) and all(t["health"] == "up" for t in targets)

        wait_for("every target up", targets_up, logs)

        wanted = metric_names(dashboard_exprs() + rule_exprs())
        missing: set[str] = set()

        def all_names_exported() -> bool:
            names = set(get_json(f"{api}/label/__name__/values")["data"])
            missing.clear()
            missing.update(wanted - names)
            return not missing

        wait_for(f"the metrics the dashboard and rules use ({missing})", all_names_exported, logs)

        # Every name is there because a service exported it, labelled with its service.
        for name in wanted - {"up"}:
            result = get_json(f"{api}/query?query=count+by+(service)+({name})")["data"]["result"]
            assert {r["metric"].get("service") for r in result} <= set(services), name
            assert result, name

        groups = get_json(f"{api}/rules")["data"]["groups"]
        rules = [rule for group in groups for rule in group["rules"]]
        assert rules and all(rule["health"] != "err" for rule in rules), rules
        expected = {
            r["alert"] for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]
        }
        assert {rule["name"] for rule in rules} == expected
