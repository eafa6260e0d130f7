"""Chaos, short form: instance SIGKILLs and broker faults on a three-broker cluster while
inputs are produced; then nothing lost, nothing reordered, repeats only as the same event
(in exactly-once mode none at all, by event id or by content, and no dead letter written
twice), and lag 0 by the Admin API and by Kafka's own consumer-groups tool.

10,000 events over 1,000 conversations (1% poison, in bursts of 4 per conversation) in
30 s, two instances of a pass-through service committing every second, three SIGKILLs of
an instance, one broker SIGKILLed and restarted, the group's coordinator SIGKILLed (while
the instances commit, and in exactly-once mode send their offsets to transactions) and
restarted, one broker restarted cleanly and one paused (SIGSTOP) for 5 s. In exactly-once
mode the inputs are written in transactions. The long form is ``benchmarks/chaos.py``
(100,000 events, 20 instance kills, broker kills).
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.dev.kafka import DevKafkaCluster, DevKafkaError
from tests.chaos.chaos_check import AT_LEAST_ONCE, EXACTLY_ONCE
from tests.chaos.chaos_harness import ChaosPlan, run_chaos, start_cluster
from tests.environment import skip_or_fail

pytestmark = [pytest.mark.chaos, pytest.mark.integration]

SHORT = ChaosPlan(
    events=10_000,
    conversations=1_000,
    service_kills=3,
    broker_kills=1,
    coordinator_kills=1,
    clean_restarts=1,
    pauses=1,
    produce_seconds=30.0,
    # Several events of a conversation close together: a kill then repeats some after a
    # later event of their conversation, which readers must expect.
    burst=4,
    seed=14,
)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevKafkaCluster]:
    try:
        c = start_cluster(tmp_path_factory.mktemp("chaos-cluster"))
    except DevKafkaError as exc:  # no Java or Maven here: the same rule as the broker fixture
        skip_or_fail(f"the three-node cluster did not start: {exc}")
    try:
        yield c
    finally:
        c.stop()


@pytest.mark.parametrize("guarantee", [AT_LEAST_ONCE, EXACTLY_ONCE])
def test_chaos_short_form(cluster: DevKafkaCluster, guarantee: str, tmp_path: Path) -> None:
    plan = dataclasses.replace(
        SHORT, guarantee=guarantee, transactional_inputs=guarantee == EXACTLY_ONCE
    )
    run = run_chaos(cluster, plan, tmp_path, f"chaos-{uuid.uuid4().hex[:8]}.")
    print(f"\n{run.report()}")
    logs = "\n".join(
        f"--- {log.name} ---\n{log.read_text()[-2000:]}" for log in sorted(tmp_path.glob("*.log"))
    )
    assert run.problems() == [], f"{run.report()}\n{logs}"
    result = run.comparison
    assert result.inputs == plan.events
    assert result.poison == round(plan.events * plan.poison_ratio)
    assert result.outputs == result.inputs - result.poison + result.duplicates
    assert result.dead_letters == result.poison + result.dead_letter_repeats
    assert (run.final_lag, run.tool_lag) == (0, 0)
    if guarantee == EXACTLY_ONCE:
        assert (result.duplicates, result.duplicate_ids, result.dead_letter_repeats) == (0, 0, 0)
