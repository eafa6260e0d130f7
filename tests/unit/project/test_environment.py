"""The tests' one reading of ``CI`` and of ``PIPELINE_*`` variables (tests/environment.py,
and the ``no_pipeline_settings`` fixture of tests/conftest.py)."""

from __future__ import annotations

import os

import pytest

from tests.environment import environment_without_settings, in_ci, skip_or_fail


@pytest.mark.parametrize("value", ["true", "TRUE", "1", "yes", "github-actions"])
def test_ci_set_to_a_value_is_ci(value: str) -> None:
    assert in_ci({"CI": value})


@pytest.mark.parametrize("value", ["", "0", "false", "False", "no", "off", " "])
def test_ci_unset_empty_or_false_is_not(value: str) -> None:
    assert not in_ci({"CI": value})
    assert not in_ci({})


def test_a_missing_prerequisite_fails_in_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "1")
    with pytest.raises(pytest.fail.Exception, match="no helm here"):
        skip_or_fail("no helm here")


def test_a_missing_prerequisite_skips_elsewhere(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "false")
    with pytest.raises(pytest.skip.Exception, match="no helm here"):
        skip_or_fail("no helm here")


def test_a_child_environment_has_no_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIPELINE_TOPIC_PREFIX", "t-x.")
    monkeypatch.setenv("pipeline_metrics_port", "0")  # settings are read in any case
    monkeypatch.setenv("PYTHONPATH", "/somewhere")
    monkeypatch.setenv("KEPT_FOR_THE_CHILD", "yes")
    env = environment_without_settings(drop=["PYTHONPATH"])
    assert not {"PIPELINE_TOPIC_PREFIX", "pipeline_metrics_port", "PYTHONPATH"} & env.keys()
    assert env["KEPT_FOR_THE_CHILD"] == "yes"
    assert os.environ["PIPELINE_TOPIC_PREFIX"] == "t-x."  # a copy: this process keeps its own


@pytest.fixture
def a_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIPELINE_TOPIC_PREFIX", "t-x.")
    monkeypatch.setenv("pipeline_metrics_port", "0")


def test_the_fixture_clears_every_setting(a_setting: None, no_pipeline_settings: None) -> None:
    assert [name for name in os.environ if name.upper().startswith("PIPELINE_")] == []
