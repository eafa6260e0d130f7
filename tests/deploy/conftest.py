"""Fixtures for the deployment checks: the real tools, and the chart rendered by helm."""

from __future__ import annotations

import importlib.util
from typing import Any

import pytest
from deploy_support import ALL_ON_VALUES, REPO, find_tool, render


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


# `kafka_bootstrap` lives in tests/integration/conftest.py; share it with these tests
# (the Prometheus scrape test) until it moves to tests/conftest.py.
_integration_conftest = REPO / "tests" / "integration" / "conftest.py"
if _integration_conftest.is_file():
    _spec = importlib.util.spec_from_file_location(
        "_pipeline_integration_conftest", _integration_conftest
    )
    assert _spec is not None and _spec.loader is not None
    _module = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(_module)
    if hasattr(_module, "kafka_bootstrap"):
        kafka_bootstrap = _module.kafka_bootstrap
