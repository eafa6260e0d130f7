"""ConsumerProbes: what /healthz and /readyz of a consumer service answer, and why."""

from __future__ import annotations

import json
import logging

from confluent_kafka import KafkaError

from pipeline.observability.consumer_probes import ConsumerProbes
from pipeline.observability.kafka_logs import ClusterConnection


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _stats(join_state: str = "steady") -> str:
    return json.dumps(
        {
            "brokers": {"b/1": {"state": "UP"}},
            "cgrp": {"state": "up", "join_state": join_state, "assignment_size": 3},
        }
    )


def _probes() -> tuple[ConsumerProbes, ClusterConnection, Clock, list[BaseException]]:
    clock = Clock()
    connection = ClusterConnection("b:9092", logger=logging.getLogger("test.probes"), clock=clock)
    fatal: list[BaseException] = []
    probes = ConsumerProbes(
        connection, down_limit=15.0, fatal=lambda: fatal[0] if fatal else None, clock=clock
    )
    return probes, connection, clock, fatal


def test_ready_once_consuming_in_a_stable_group() -> None:
    probes, connection, _, _ = _probes()
    assert probes.ready() == (False, "not consuming (starting or shutting down)")
    probes.fetched(0)
    assert probes.ready() == (False, "joining the consumer group (no group state yet)")
    connection.on_stats(_stats("wait-sync"))
    assert probes.ready() == (False, "consumer group not stable: group up, wait-sync, 3 partitions")
    connection.on_stats(_stats())
    assert probes.ready() == (True, "consuming: group up, steady, 3 partitions")


def test_an_outage_longer_than_the_setting_is_not_ready_and_recovers() -> None:
    probes, connection, clock, _ = _probes()
    probes.fetched(0)
    connection.on_stats(_stats())
    connection.on_error(KafkaError(KafkaError._ALL_BROKERS_DOWN, "1/1 brokers are down"))
    clock.now += 10
    probes.fetched(0)
    ok, reason = probes.ready()
    assert ok and reason == "Kafka at b:9092 unreachable for 10s, retrying"
    clock.now += 6
    probes.fetched(0)
    assert probes.ready() == (False, "Kafka at b:9092 unreachable for 16s")
    assert probes.healthy() == (True, "event loop running")  # no reason to restart
    connection.on_stats(_stats("wait-join"))  # back, rejoining the group
    assert probes.ready()[0] is False
    connection.on_stats(_stats())
    assert probes.ready()[0] is True


def test_no_fetch_for_a_while_is_not_ready_and_a_stuck_loop_not_live() -> None:
    probes, connection, clock, _ = _probes()
    probes.fetched(0)
    connection.on_stats(_stats())
    clock.now += 11
    assert probes.ready() == (
        False,
        "no fetch for 11s: rebalancing or restoring assigned partitions",
    )
    assert probes.healthy()[0] is True
    clock.now += 50
    assert probes.healthy() == (False, "event loop stuck for 61s")


def test_a_fatal_error_is_neither_live_nor_ready() -> None:
    probes, _, _, fatal = _probes()
    probes.fetched(0)
    fatal.append(RuntimeError("boom"))
    assert probes.healthy() == (False, "stopped on RuntimeError: boom")
    assert probes.ready() == (False, "stopped on RuntimeError: boom")
