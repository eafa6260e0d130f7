"""``pipeline events``: the types with their topics, one type's fields, and an example body
that ``pipeline produce`` accepts (checked for every type, a user's own included)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import ClassVar

import confluent_kafka
import pytest
from click.testing import CliRunner, Result

from pipeline.cli import main
from pipeline.config import Settings
from pipeline.events.catalog import load_settings_catalog
from pipeline.events.serde import SingleObjectSerde
from tests.user_events import EVENT_TYPE, FULL_NAME, write_user_events


@pytest.fixture(autouse=True)
def user_folders(
    no_pipeline_settings: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    schemas, topics = write_user_events(tmp_path)
    monkeypatch.setenv("PIPELINE_EXTRA_SCHEMA_DIRS", str(schemas))
    monkeypatch.setenv("PIPELINE_EXTRA_TOPIC_DIRS", str(topics))
    monkeypatch.setenv("PIPELINE_TOPIC_PREFIX", "t-ev.")
    monkeypatch.setenv("PIPELINE_BOOTSTRAP_SERVERS", "127.0.0.1:1")


def cli(*args: str, stdin: str | None = None) -> Result:
    result = CliRunner().invoke(main, list(args), input=stdin)
    assert "Traceback" not in result.output
    return result


def test_events_lists_every_type_with_its_topic_and_schema() -> None:
    result = cli("events")
    assert result.exit_code == 0, result.output
    rows = {line.split()[0]: line.split()[1:] for line in result.stdout.splitlines()[1:]}
    assert rows[EVENT_TYPE] == ["t-ev.order_placed", FULL_NAME]
    assert rows["message_received"] == [
        "t-ev.message_received",
        "pipeline.events.MessageReceived",
    ]
    assert set(rows) == set(load_settings_catalog(Settings()).event_types)
    assert "dead_letter" not in rows


def test_show_prints_the_fields_with_their_docs() -> None:
    result = cli("events", "show", EVENT_TYPE)
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert out.startswith("order_placed: A customer placed an order in the shop.\n")
    assert f"schema  {FULL_NAME}" in out
    assert "topic   t-ev.order_placed" in out
    assert "  order_id  string  [required]\n      The shop's order number.\n" in out
    assert "  coupon  null | string  [default null]\n      Coupon code used, if any.\n" in out
    assert "  ship_to.channel  enum Channel (web, slack," in out
    assert "metadata  " not in out


def test_show_of_an_unknown_type_exits_2_listing_the_known_ones() -> None:
    result = cli("events", "show", "order_shipped")
    assert result.exit_code == 2
    assert "unknown event type 'order_shipped'; known: " in result.stderr
    assert EVENT_TYPE in result.stderr


class RecordingProducer:
    """Takes the record without a broker, so the test can decode what would be produced."""

    produced: ClassVar[list[bytes]] = []

    def __init__(self, config: dict[str, object]) -> None:
        pass

    def produce(self, topic: str, *, value: bytes, **kwargs: object) -> None:
        self.produced.append(value)

    def flush(self, timeout: float) -> int:
        return 0

    def list_topics(self, topic: str | None = None, timeout: float = -1) -> object:
        return object()  # the cluster answers

    def poll(self, timeout: float = -1) -> int:
        return 0


@pytest.mark.parametrize("event_type", [*load_settings_catalog(Settings()).event_types, EVENT_TYPE])
def test_the_printed_example_is_accepted_by_produce(
    monkeypatch: pytest.MonkeyPatch, event_type: str
) -> None:
    RecordingProducer.produced = []
    monkeypatch.setattr(confluent_kafka, "Producer", RecordingProducer)
    shown = cli("events", "show", event_type)
    example = cli("events", "show", event_type, "--example")
    assert example.exit_code == 0, example.output
    assert shown.stdout.endswith(example.stdout)  # the same example in the full view
    result = cli("produce", event_type, "-", "-c", "conv-1", stdin=example.stdout)
    assert result.exit_code == 0, result.output
    (value,) = RecordingProducer.produced
    event = SingleObjectSerde(load_settings_catalog(Settings())).decode(value)
    assert event.type == event_type
    body = json.loads(example.stdout)
    assert set(body) == set(event.data)
