"""The "Build your own agent" walk-through (docs/own-agent.md) is real code: its files
live in examples/own_agent, and these tests keep them working."""

from __future__ import annotations

import importlib
import subprocess
import sys
import tomllib

import pytest

from pipeline.config import Settings
from pipeline.events.catalog import load_settings_catalog
from pipeline.toolbox import ENTRY_POINT_GROUP, Tool
from pipeline.topology import load_settings_topology
from tests.environment import environment_without_settings
from tests.paths import REPO

EXAMPLE = REPO / "examples" / "own_agent"


def test_the_examples_own_unit_tests_pass() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=EXAMPLE,
        capture_output=True,
        text=True,
        timeout=300,
        env=environment_without_settings(),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 passed" in result.stdout


def test_the_plugin_entry_point_names_a_tool(monkeypatch: pytest.MonkeyPatch) -> None:
    project = tomllib.loads((EXAMPLE / "pyproject.toml").read_text())
    entry_points = project["project"]["entry-points"][ENTRY_POINT_GROUP]
    assert entry_points == {"order_status": "own_agent.tools:order_status"}
    monkeypatch.syspath_prepend(str(EXAMPLE))
    module, _, attr = entry_points["order_status"].partition(":")
    found = getattr(importlib.import_module(module), attr)
    assert isinstance(found, Tool)
    assert found.name == "order_status"
    assert found.parameters["required"] == ["order_id"]


def test_the_extra_folders_add_the_event_type_and_its_topic() -> None:
    settings = Settings(
        extra_schema_dirs=[EXAMPLE / "schemas"], extra_topic_dirs=[EXAMPLE / "topics"]
    )
    assert "order_placed" in load_settings_catalog(settings).event_types
    assert "order_placed" in {t.name for t in load_settings_topology(settings)}


def test_pipeline_run_imports_the_example_and_checks_its_event_types() -> None:
    """`pipeline run own_agent.shop:service` from the example's folder imports the service;
    without the extra folders it stops at once, naming the type it does not know."""
    env = environment_without_settings()
    result = subprocess.run(
        [sys.executable, "-m", "pipeline", "run", "own_agent.shop:service"],
        cwd=EXAMPLE,
        capture_output=True,
        text=True,
        timeout=60,
        env={**env, "PIPELINE_METRICS_PORT": "0"},
    )
    assert result.returncode == 2, result.stderr
    assert "service shop handles 'order_placed' (no schema and no topic" in result.stderr
