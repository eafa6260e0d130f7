"""Fixtures for every test. The Kafka broker fixtures live in ``kafka_fixtures.py``."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

INTEGRATION_DIR = Path(__file__).parent / "integration"
BROWSER_DIR = Path(__file__).parent / "browser"

pytest_plugins = ["tests.kafka_fixtures"]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests under tests/integration, and any test using the broker, are ``integration``;
    tests under tests/browser are ``browser``."""
    for item in items:
        uses_broker = "kafka_bootstrap" in getattr(item, "fixturenames", ())
        if item.path.is_relative_to(INTEGRATION_DIR) or uses_broker:
            item.add_marker(pytest.mark.integration)
        if item.path.is_relative_to(BROWSER_DIR):
            item.add_marker(pytest.mark.browser)


@pytest.fixture
def topic_prefix() -> str:
    """A prefix no other test uses, e.g. ``t-1a2b3c4d.``, so tests never share a topic."""
    return f"t-{uuid.uuid4().hex[:8]}."
