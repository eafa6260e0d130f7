"""Fixtures for every test. Broker fixtures live in ``tests/integration/conftest.py``."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

INTEGRATION_DIR = Path(__file__).parent / "integration"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Every test under tests/integration needs a broker: mark it ``integration``."""
    for item in items:
        if item.path.is_relative_to(INTEGRATION_DIR):
            item.add_marker(pytest.mark.integration)


@pytest.fixture
def topic_prefix() -> str:
    """A prefix no other test uses, e.g. ``t-1a2b3c4d.``, so tests never share a topic."""
    return f"t-{uuid.uuid4().hex[:8]}."
