"""A real Prometheus (Debian's package) scraping real services on the session's broker:
every target is up, the alert rules load, and every metric name that the dashboard and
the alert rules use is exported by a running service.

Every built-in service runs (``pipeline run gateway|agent|tools|delivery|scheduler|
webhooks|echo``) plus a flaky one. Labelled series appear only once something used them,
so the test drives a turn through the whole pipeline: a web chat message into the
gateway, the agent asking an OpenAI-compatible stand-in (real LLM metrics), the model
asking for the calculator, the tools service running it, the answer delivered to a web
callback (turn latency, a sent delivery). Messages whose reply address is no URL make
failed deliveries, a text starting with "fail" handler errors, undecodable bytes
dead letters, and the agent's follow-up a timer that the scheduler fires."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from confluent_kafka import Producer

from pipeline.dev.stack.local import development_env
from tests.deploy.deploy_support import RULES, dashboard_exprs, metric_names, rule_exprs
from tests.deploy.scrape_services import callbacks, chat_completions

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


def post_json(url: str, body: dict[str, Any], headers: dict[str, str]) -> int:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", **headers},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return int(response.status)


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


# Service name -> what `pipeline run` gets.
SERVICES = {
    "gateway": "gateway",
    "agent": "agent",
    "tools": "tools",
    "delivery": "delivery",
    "scheduler": "scheduler",
    "webhooks": "webhooks",
    "console": "console",
    "echo": "echo",
    "flaky": "scrape_services:build_flaky",
}
WEB_TOKEN = "tok-scrape"


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

    ports = {name: free_port() for name in SERVICES}
    gateway_port = free_port()
    logs = [tmp_path / f"{name}.log" for name in SERVICES] + [tmp_path / "prometheus.log"]
    delivered: list[dict[str, Any]] = []
    with contextlib.ExitStack() as stack:
        llm_port = stack.enter_context(chat_completions())
        callback_port = stack.enter_context(callbacks(delivered))
        own_env = {
            "gateway": {
                "PIPELINE_GATEWAY__HOST": "127.0.0.1",
                "PIPELINE_GATEWAY__PORT": str(gateway_port),
                "PIPELINE_GATEWAY__WEB_TOKENS": json.dumps({"scrape": WEB_TOKEN}),
            },
            "console": {
                "PIPELINE_CONSOLE__HOST": "127.0.0.1",
                "PIPELINE_CONSOLE__PORT": str(free_port()),
            },
            "agent": {
                "PIPELINE_LLM__PROVIDER": "openai",
                "PIPELINE_LLM__BASE_URL": f"http://127.0.0.1:{llm_port}/v1",
                "PIPELINE_LLM__MODEL": "scrape-model",
                "PIPELINE_LLM__API_KEY": "not-a-secret",
                # The stand-in is on 127.0.0.1, which the egress policy refuses unless named.
                "PIPELINE_LLM__ALLOWED_NETWORKS": '["127.0.0.0/8"]',
                "PIPELINE_LLM__MAX_RETRIES": "0",
                "PIPELINE_AGENT__FOLLOW_UP_SECONDS": "1",
            },
            "delivery": {
                # The callback receiver is on 127.0.0.1 over http: development settings.
                **development_env(),
                "PIPELINE_DELIVERY__MAX_ATTEMPTS": "2",
                "PIPELINE_DELIVERY__BACKOFF_INITIAL_SECONDS": "0.05",
            },
        }
        for name, spec in SERVICES.items():
            service_env = {
                **env,
                **own_env.get(name, {}),
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

        # One turn through the gateway, the agent, the model, the calculator and delivery.
        status = post_json(
            f"http://127.0.0.1:{gateway_port}/v1/web/messages",
            {
                "user_id": "user-web",
                "text": "what is 12*7?",
                "callback_url": f"http://127.0.0.1:{callback_port}/reply",
            },
            {"Authorization": f"Bearer {WEB_TOKEN}"},
        )
        assert status == 202

        # Good messages, one that the flaky service fails on, and bytes nobody can decode;
        # their reply address "user-1" is no URL, so their answers fail to be delivered.
        for i, text in enumerate(["hello", "how are you", "fail please", "bye"]):
            produced = subprocess.run(
                [*pipeline, "produce", "message_received", message(text), "-c", f"conv-{i}"],
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert produced.returncode == 0, produced.stdout + produced.stderr
        # A tool call that errors, straight to the tools service.
        call = {
            "call_id": "scrape-1",
            "tool": "calculator",
            "arguments_json": '{"expression": "1/0"}',
        }
        produced = subprocess.run(
            [*pipeline, "produce", "tool_called", json.dumps(call), "-c", "conv-tool"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert produced.returncode == 0, produced.stdout + produced.stderr
        producer = Producer({"bootstrap.servers": kafka_bootstrap})
        producer.produce(f"{prefix}message_received", key=b"conv-garbage", value=b"not avro")
        assert producer.flush(30) == 0

        wait_for(
            "the calculated answer at the web callback",
            lambda: any("84" in str(body.get("text")) for body in delivered),
            logs,
        )

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
            return len(targets) == len(SERVICES) and all(t["health"] == "up" for t in targets)

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
            assert {r["metric"].get("service") for r in result} <= set(SERVICES), name
            assert result, name

        # The label values the alerts and panels select on are the ones the code uses.
        def count(query: str) -> float:
            url = f"{api}/query?query={urllib.parse.quote(query)}"
            result = get_json(url)["data"]["result"]
            return float(result[0]["value"][1]) if result else 0.0

        selectors = [
            'pipeline_deliveries_total{service="delivery", channel="web", state="sent"}',
            'pipeline_deliveries_total{service="delivery", state="failed"}',
            'pipeline_turn_latency_seconds_count{service="delivery", channel="web"}',
            'pipeline_llm_tokens_total{service="agent", model="scrape-model", kind="prompt"}',
            'pipeline_llm_tokens_total{service="agent", kind="completion"}',
            'pipeline_llm_request_duration_seconds_count{service="agent", provider="openai"}',
            'pipeline_tool_calls_total{service="tools", tool="calculator", status="ok"}',
            'pipeline_tool_calls_total{service="tools", tool="calculator", status!="ok"}',
            'pipeline_tool_duration_seconds_count{service="tools", tool="calculator"}',
            'pipeline_gateway_requests_total{service="gateway", status="202"}',
            'pipeline_gateway_request_duration_seconds_count{service="gateway"}',
            'pipeline_rebalances_total{kind="assigned"}',
            'pipeline_timers_fired_total{service="scheduler"}',
        ]
        absent: list[str] = []

        def every_selector_counts() -> bool:
            absent[:] = [s for s in selectors if count(f"sum({s})") <= 0]
            return not absent

        wait_for(f"series with the labels the rules use ({absent})", every_selector_counts, logs)

        groups = get_json(f"{api}/rules")["data"]["groups"]
        rules = [rule for group in groups for rule in group["rules"]]
        assert rules and all(rule["health"] != "err" for rule in rules), rules
        expected = {
            r["alert"] for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]
        }
        assert {rule["name"] for rule in rules} == expected
