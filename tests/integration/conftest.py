"""Fixtures of the integration tests beyond the shared broker's (tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.dev.kafka import DevKafka, DevKafkaError, free_port
from tests.environment import skip_or_fail

HEAP = ("-Xmx384m",)


@pytest.fixture
def stoppable_broker(tmp_path: Path) -> Iterator[DevKafka]:
    """A broker of the test's own, which it may stop and start again (data kept): never
    the shared one."""
    kafka = DevKafka(
        free_port(),
        controller_port=free_port(),
        data_dir=tmp_path / "kafka",
        keep_data=True,
        heap_opts=HEAP,
    )
    try:
        kafka.start()
    except DevKafkaError as exc:  # no Java or Maven here: the same rule as the broker fixture
        skip_or_fail(f"the test's own broker did not start: {exc}")
    try:
        yield kafka
    finally:
        kafka.stop()
