"""Durable actions, short form: what the agent does (model calls, tool side effects) while
the agent or the tools service is killed, judged from outside (issue "Durable agent
actions", its acceptance).

60 conversations, each asking for one refund through one of three tools in turn (keyed,
at most once, over MCP), produced over 30 s; the agent's model is a stand-in answering in
200 ms. In at-least-once and exactly-once mode the agent or the tools service is
SIGKILLed 8 times and restarted at once; in at-least-once mode they are SIGTERMed 4 times,
in turn. Instances keep their ids and static group membership, so a restarted instance is
back at work within seconds (the long form, ``benchmarks/actions_chaos.py``, runs without
static membership, 300 conversations and 8 kills per case, and prints the issue's table).

Acceptance: no tool effect beyond one per logical call for the keyed and at-most-once tools
(each either runs once or is reported "outcome unknown"); the model called again only for
steps in flight at a kill of the agent (answered less than 1 s before it, or after it), at
most as many as were in flight; no reply missing or duplicated; under SIGTERM no model call
and no tool execution repeated at all. The runs share one broker of their own, started on
free ports of 127.0.0.1 (one node: the services are what is killed here, not brokers).
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.dev.kafka import DevKafka, DevKafkaError, free_port
from tests.chaos.actions_check import AGENT, SIGKILL, SIGTERM, TOOLS
from tests.chaos.actions_harness import BOTH, ActionsPlan, ActionsRun, run_actions
from tests.chaos.chaos_check import AT_LEAST_ONCE, EXACTLY_ONCE
from tests.environment import skip_or_fail

pytestmark = [pytest.mark.chaos, pytest.mark.integration]

SHORT = ActionsPlan(
    conversations=60,
    kills=8,
    produce_seconds=30.0,
    static_membership=True,
    settle_seconds=120.0,
    seed=3,
)


@pytest.fixture(scope="module")
def bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    broker = DevKafka(
        free_port(), controller_port=free_port(), data_dir=tmp_path_factory.mktemp("broker")
    )
    try:
        broker.start()
    except DevKafkaError as exc:  # no Java or Maven here: the same rule as the broker fixture
        skip_or_fail(f"the broker did not start: {exc}")
    try:
        yield broker.bootstrap_servers
    finally:
        broker.stop()


def judged(run: ActionsRun, workdir: Path) -> None:
    """Print the run's figures; fail on a broken run first, then on broken actions."""
    print(f"\n{run.report()}")
    logs = "\n".join(
        f"--- {log.name} ---\n{log.read_text()[-2000:]}" for log in sorted(workdir.glob("*.log"))
    )
    assert run.run_problems() == [], f"{run.report()}\n{logs}"
    assert run.comparison.problems(run.plan.guarantee, run.plan.signal) == [], run.report()


@pytest.mark.parametrize("target", [AGENT, TOOLS])
@pytest.mark.parametrize("guarantee", [AT_LEAST_ONCE, EXACTLY_ONCE])
def test_actions_under_sigkill(bootstrap: str, guarantee: str, target: str, tmp_path: Path) -> None:
    plan = dataclasses.replace(SHORT, guarantee=guarantee, target=target, signal=SIGKILL)
    run = run_actions(bootstrap, plan, tmp_path, f"actions-{uuid.uuid4().hex[:8]}.")
    judged(run, tmp_path)


def test_actions_under_sigterm(bootstrap: str, tmp_path: Path) -> None:
    plan = dataclasses.replace(SHORT, target=BOTH, signal=SIGTERM, kills=4)
    run = run_actions(bootstrap, plan, tmp_path, f"actions-{uuid.uuid4().hex[:8]}.")
    judged(run, tmp_path)
