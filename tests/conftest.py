"""Fixtures for every test. The Kafka broker fixtures live in ``kafka_fixtures.py``; what
``CI`` and ``PIPELINE_*`` variables mean to the tests, in ``environment.py``."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from tests.environment import is_setting

UNIT_DIR = Path(__file__).parent / "unit"
INTEGRATION_DIR = Path(__file__).parent / "integration"
BROWSER_DIR = Path(__file__).parent / "browser"

pytest_plugins = ["tests.kafka_fixtures"]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests under tests/integration, and any test using the broker, are ``integration``;
    tests under tests/browser are ``browser``. A unit test never uses the broker."""
    for item in items:
        uses_broker = "kafka_bootstrap" in getattr(item, "fixturenames", ())
        if uses_broker and item.path.is_relative_to(UNIT_DIR):
            raise pytest.UsageError(
                f"{item.nodeid} uses the Kafka broker: unit tests need none, "
                "so it belongs in tests/integration"
            )
        if item.path.is_relative_to(INTEGRATION_DIR) or uses_broker:
            item.add_marker(pytest.mark.integration)
        if item.path.is_relative_to(BROWSER_DIR):
            item.add_marker(pytest.mark.browser)


@pytest.fixture
def topic_prefix() -> str:
    """A prefix no other test uses, e.g. ``t-1a2b3c4d.``, so tests never share a topic."""
    return f"t-{uuid.uuid4().hex[:8]}."


@pytest.fixture
def no_pipeline_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """No ``PIPELINE_*`` variable for the duration of the test: only what it sets counts."""
    for name in list(os.environ):
        if is_setting(name):
            monkeypatch.delenv(name)
