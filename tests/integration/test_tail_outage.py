"""`pipeline tail` says on stderr when it cannot reach Kafka and when Kafka is back."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

from pipeline.config import Settings
from pipeline.dev.kafka import DevKafka
from pipeline.topology import admin_client, apply, load_settings_topology
from tests.environment import environment_without_settings


def test_tail_says_when_kafka_goes_and_comes_back(
    stoppable_broker: DevKafka, topic_prefix: str
) -> None:
    settings = Settings(
        bootstrap_servers=stoppable_broker.bootstrap_servers,
        topic_prefix=topic_prefix,
        topic_replication_factor=1,
    )
    apply(admin_client(settings), load_settings_topology(settings), settings)
    env = environment_without_settings() | {
        "PIPELINE_BOOTSTRAP_SERVERS": stoppable_broker.bootstrap_servers,
        "PIPELINE_TOPIC_PREFIX": topic_prefix,
    }
    tail = subprocess.Popen(
        [sys.executable, "-m", "pipeline", "tail", "message_received"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    said: list[str] = []

    def read() -> None:
        assert tail.stderr is not None
        said.extend(line.rstrip("\n") for line in tail.stderr)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()

    def wait_for(text: str, seconds: float) -> float:
        started = time.monotonic()
        while time.monotonic() - started < seconds:
            if any(text in line for line in said):
                return time.monotonic() - started
            time.sleep(0.1)
        raise AssertionError(f"no {text!r} within {seconds}s: {said}")

    try:
        time.sleep(3)  # tail has assigned its partitions
        assert tail.poll() is None, said
        stoppable_broker.stop()
        wait_for(f"tail: Kafka at {stoppable_broker.bootstrap_servers} is unreachable", 15)
        stoppable_broker.start()
        wait_for("is reachable again after", 60)
    finally:
        tail.terminate()
        tail.wait(30)
        reader.join(10)
        assert tail.stderr is not None
        tail.stderr.close()
    assert sum("is unreachable" in line for line in said) == 1, said
