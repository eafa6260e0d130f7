"""``pipeline dlq``'s usage errors: one line and exit 2, without a traceback."""

from __future__ import annotations

import pytest
from click.testing import CliRunner, Result

from pipeline.cli import main


@pytest.fixture(autouse=True)
def no_broker(no_pipeline_settings: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIPELINE_BOOTSTRAP_SERVERS", "127.0.0.1:1")


def dlq(*args: str) -> Result:
    result = CliRunner().invoke(main, ["dlq", *args])
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    return result


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("show", "nope"), "error: 'nope' is not a dead letter id"),
        (("redrive", "1-2", "--operator", "op"), "error: '1-2' is not a dead letter id"),
        (("redrive", "1:2"), "Missing option '--operator'"),
        (("list", "--limit", "0"), "0 is not in the range x>=1"),
    ],
)
def test_usage_errors_exit_2(args: tuple[str, ...], says: str) -> None:
    result = dlq(*args)
    assert result.exit_code == 2, result.output
    assert says in result.output


@pytest.mark.parametrize(
    "args", [("list",), ("show", "0:1"), ("redrive", "0:1", "--operator", "a")]
)
def test_an_unreachable_cluster_is_one_line_and_exit_2(args: tuple[str, ...]) -> None:
    result = dlq(*args)
    assert result.exit_code == 2, result.output
    [line] = result.output.splitlines()
    assert line.startswith("error: Kafka at 127.0.0.1:1 is unreachable"), line


def test_a_bad_setting_is_one_line_and_exit_2(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIPELINE_MAX_RETRIES", "-1")
    result = dlq("list")
    assert result.exit_code == 2, result.output
    assert result.output.startswith("error: invalid setting PIPELINE_MAX_RETRIES"), result.output
