"""``pipeline evaluate``'s usage errors: each is one line and exit 2, before Kafka is
read; an unreachable cluster is one line and exit 2 too."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from pipeline.cli import main


@pytest.fixture(autouse=True)
def no_broker(no_pipeline_settings: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIPELINE_BOOTSTRAP_SERVERS", "127.0.0.1:1")


def evaluate(*args: str) -> Result:
    result = CliRunner().invoke(main, ["evaluate", *args])
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    return result


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("--set", "s.json", "--tenant", "acme"), "--set reads a saved set: choose"),
        (("--since", "yesterday"), "'yesterday' is not an ISO 8601 time"),
        (("--service", "delivery"), "delivery cannot be evaluated: it sends to the channels"),
        (("--service", "nosuch"), "unknown service 'nosuch'"),
        (("-o", "llm.model"), "is not NAME=VALUE"),
        (("-o", "agent.max_tool_depth=-2"), "PIPELINE_AGENT__MAX_TOOL_DEPTH"),
        (("--fail-if", "answers>5%"), "is not METRIC>LIMIT"),
        (("--check", "no_such_checks_module"), "cannot import the checks"),
        (("--set", "missing.json"), "cannot read the recorded set missing.json"),
        (("--sample", "0"), "0 is not in the range x>=1"),
    ],
)
def test_a_bad_invocation_is_one_line_and_exit_2(args: tuple[str, ...], says: str) -> None:
    result = evaluate(*args)
    assert result.exit_code == 2, result.output
    assert says in result.output


def test_an_unreachable_cluster_is_one_line_and_exit_2(tmp_path: Path) -> None:
    result = evaluate("--sample", "5", "--json", str(tmp_path / "r.json"))
    assert result.exit_code == 2, result.output
    assert len(result.output.strip().splitlines()) == 1, result.output
    assert not (tmp_path / "r.json").exists()
