"""Fixtures for the deployment checks: the real tools, and the chart rendered by helm."""

from __future__ import annotations

from typing import Any

import pytest

from tests.deploy.deploy_support import ALL_ON_VALUES, find_tool, render


@pytest.fixture(scope="session")
def helm() -> str:
    return find_tool("helm")


@pytest.fixture(scope="session")
def promtool() -> str:
    return find_tool("promtool")


@pytest.fixture(scope="session")
def prometheus() -> str:
    return find_tool("prometheus")


@pytest.fixture(scope="session")
def default_manifests(helm: str) -> list[dict[str, Any]]:
    return render(helm)


@pytest.fixture(scope="session")
def all_on_manifests(helm: str) -> list[dict[str, Any]]:
    return render(helm, "--values", str(ALL_ON_VALUES))
