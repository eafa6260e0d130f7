"""A team's own event type, end to end on a real broker, as a user drives it from the CLI.

In a temporary folder: a schema folder and a topic folder adding ``order_placed`` next to
the bundled types, and ``order_service.py`` whose handler answers an order with a
``response_ready``. From that folder, with ``PIPELINE_EXTRA_*_DIRS`` set: ``pipeline topics
apply`` creates the user's topic with the bundled ones, ``pipeline run
order_service:service`` imports the module from the folder, ``pipeline events show
order_placed --example`` prints a body that ``pipeline produce`` sends, a bad body is
refused with nothing produced, and the answer comes back on ``response_ready``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient

from tests.environment import environment_without_settings
from tests.integration.runtime_support import stop_service
from tests.user_events import EVENT_TYPE, write_user_events

PIPELINE = Path(sys.executable).parent / "pipeline"
CONVERSATION = "conv-orders-1"

ORDER_SERVICE = """
from pipeline import Context, Event, Service

service = Service("orders")


@service.handler("order_placed")
async def confirm(event: Event, ctx: Context) -> None:
    ctx.emit(
        "response_ready",
        {
            "reply_to": event["ship_to"],
            "text": f"order {event['order_id']} confirmed: {event['total_cents']} cents",
            "in_reply_to": None,
            "proactive": True,
            "ingress_at": event.metadata.occurred_at,
        },
    )
"""


@pytest.fixture
def app(
    tmp_path: Path, kafka_bootstrap: str, admin: AdminClient, topic_prefix: str
) -> Iterator[dict[str, str]]:
    """The user's folder (cwd) and environment; deletes the prefixed topics afterwards."""
    schemas, topics = write_user_events(tmp_path)
    (tmp_path / "order_service.py").write_text(ORDER_SERVICE)
    env = {
        **environment_without_settings(),
        "PIPELINE_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "PIPELINE_TOPIC_PREFIX": topic_prefix,
        "PIPELINE_TOPIC_REPLICATION_FACTOR": "1",
        "PIPELINE_EXTRA_SCHEMA_DIRS": str(schemas),
        "PIPELINE_EXTRA_TOPIC_DIRS": str(topics),
        "PIPELINE_METRICS_PORT": "0",
        "PIPELINE_COMMIT_INTERVAL_SECONDS": "0.2",
        "CWD": str(tmp_path),
    }
    env.pop("PYTHONPATH", None)
    yield env
    ours = [t for t in admin.list_topics(timeout=30).topics if t.startswith(topic_prefix)]
    if ours:
        for future in admin.delete_topics(ours, operation_timeout=30).values():
            future.result(timeout=30)


def cli(
    env: dict[str, str], *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(PIPELINE), *args],
        cwd=env["CWD"],
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_users_event_type_is_handled_end_to_end(app: dict[str, str], topic_prefix: str) -> None:
    applied = cli(app, "topics", "apply")
    assert applied.returncode == 0, applied.stderr
    assert f"create {topic_prefix}{EVENT_TYPE} " in applied.stdout
    assert f"create {topic_prefix}message_received " in applied.stdout

    listed = cli(app, "events")
    rows = [line.split() for line in listed.stdout.splitlines()]
    assert [EVENT_TYPE, f"{topic_prefix}{EVENT_TYPE}", "acme.shop.OrderPlaced"] in rows

    log = Path(app["CWD"]) / "service.log"
    with log.open("wb") as out:
        service = subprocess.Popen(
            [str(PIPELINE), "run", "order_service:service"],
            cwd=app["CWD"],
            env=app,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        bad = cli(app, "produce", EVENT_TYPE, '{"order_id": 7, "rush": true}', "-c", CONVERSATION)
        assert bad.returncode == 2, bad.stderr
        assert "order_id: expected string, got a number (7)" in bad.stderr
        assert "rush: unknown field" in bad.stderr
        assert "total_cents: missing (required, long)" in bad.stderr

        example = cli(app, "events", "show", EVENT_TYPE, "--example")
        assert example.returncode == 0, example.stderr
        body = json.loads(example.stdout)
        body["order_id"] = "A-1001"
        body["total_cents"] = 4599
        sent = cli(app, "produce", EVENT_TYPE, json.dumps(body), "-c", CONVERSATION)
        assert sent.returncode == 0, sent.stderr
        assert json.loads(sent.stdout)["topic"] == f"{topic_prefix}{EVENT_TYPE}"

        answer = cli(
            app,
            "tail",
            "response_ready",
            "--from-beginning",
            "-c",
            CONVERSATION,
            "--max-events",
            "1",
            "--idle-timeout",
            "90",
        )
        assert answer.returncode == 0, answer.stderr
        (line,) = answer.stdout.splitlines()
        event = json.loads(line)["event"]
        assert event["text"] == "order A-1001 confirmed: 4599 cents"
        assert event["reply_to"] == body["ship_to"]
        assert event["metadata"]["conversation_id"] == CONVERSATION

        orders = cli(
            app, "tail", EVENT_TYPE, "--from-beginning", "--max-events", "2", "--idle-timeout", "3"
        )
        assert [json.loads(x)["event"]["order_id"] for x in orders.stdout.splitlines()] == [
            "A-1001"
        ], "the refused body was produced"
    finally:
        code = stop_service(service)
    assert code == 0, log.read_text()
