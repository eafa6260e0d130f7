"""ClusterConnection: librdkafka's errors and log lines become a few readable lines."""

from __future__ import annotations

import json
import logging

import pytest
from confluent_kafka import KafkaError

from pipeline.observability.kafka_logs import ClusterConnection


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


FAIL = ("%s [%s] %s", "FAIL", "rdkafka#consumer-1", "127.0.0.1:9092/1: Connect failed")


def _connection(clock: Clock) -> ClusterConnection:
    return ClusterConnection("kafka-0:9092", logger=logging.getLogger("test.kafka"), clock=clock)


def _stats(state: str = "UP", join_state: str = "steady") -> str:
    return json.dumps(
        {
            "brokers": {"kafka-0:9092/1": {"state": state}},
            "cgrp": {"state": "up", "join_state": join_state, "assignment_size": 4},
        }
    )


def test_an_outage_is_one_warning_and_one_info(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    connection = _connection(clock)
    with caplog.at_level(logging.DEBUG, logger="test.kafka"):
        for _ in range(300):  # what librdkafka says in a 40 s outage, and more
            connection.log_line(logging.ERROR, *FAIL)
            connection.on_error(KafkaError(KafkaError._TRANSPORT, "Connect failed"))
            connection.on_error(KafkaError(KafkaError._ALL_BROKERS_DOWN, "1/1 brokers are down"))
            clock.now += 0.1
        assert connection.unreachable and connection.down_for == pytest.approx(30.0)
        connection.on_stats(_stats())
    loud = [(r.levelname, r.getMessage()) for r in caplog.records if r.levelno >= logging.INFO]
    assert loud == [
        (
            "WARNING",
            "Kafka at kafka-0:9092 is unreachable (Connect failed); retrying, quietly until "
            "it is back",
        ),
        ("INFO", "Kafka at kafka-0:9092 is reachable again after 30.0s down"),
    ]
    assert not connection.unreachable and connection.down_for == 0.0


def test_other_lines_are_rate_limited_with_a_count(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    connection = _connection(clock)
    line = ("%s [%s] %s", "SESSTMOUT", "rdkafka#consumer-1", "session timed out after 10019 ms")
    with caplog.at_level(logging.INFO, logger="test.kafka"):
        for i in range(5):
            connection.log_line(logging.WARNING, *line[:3], line[3].replace("10019", str(i)))
            clock.now += 1
        clock.now += 60
        connection.log_line(logging.WARNING, *line)
    messages = [r.getMessage() for r in caplog.records]
    assert messages == [
        "librdkafka SESSTMOUT: session timed out after 0 ms",
        "librdkafka SESSTMOUT: session timed out after 10019 ms "
        "(and 4 more like it in the last minute)",
    ]


def test_statistics_give_the_group_state() -> None:
    connection = _connection(Clock())
    assert connection.group is None
    connection.on_stats(_stats(join_state="wait-join"))
    group = connection.group
    assert group is not None and not group.stable
    assert group.describe() == "group up, wait-join, 4 partitions"
    connection.on_stats(_stats())
    assert connection.group is not None and connection.group.stable
    connection.on_stats("not json")  # ignored
    assert connection.group.stable


def test_the_configs_route_logs_errors_and_statistics() -> None:
    connection = _connection(Clock())
    client = connection.client_config()
    assert set(client) == {"logger", "error_cb"}
    consumer = connection.consumer_config()
    assert consumer["stats_cb"] == connection.on_stats
    assert int(consumer["statistics.interval.ms"]) > 0
