"""``pipeline replay``'s usage errors: each is one line and exit 2, before Kafka is read."""

from __future__ import annotations

import pytest
from click.testing import CliRunner, Result

from pipeline.cli import main


@pytest.fixture(autouse=True)
def no_broker(no_pipeline_settings: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIPELINE_BOOTSTRAP_SERVERS", "127.0.0.1:1")


def replay(*args: str) -> Result:
    result = CliRunner().invoke(main, ["replay", *args])
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    return result


@pytest.mark.parametrize(
    ("args", "says"),
    [
        ((), "give either CONVERSATION or --sample N"),
        (("c1", "--sample", "2"), "give either CONVERSATION or --sample N"),
        (("--sample", "0"), "0 is not in the range x>=1"),
        (("c1", "--from", "yesterday"), "'yesterday' is not an ISO 8601 time"),
        (("c1", "--service", "nosuch"), "unknown service 'nosuch'"),
        (("c1", "--service", "delivery"), "delivery cannot be replayed: it sends to the channels"),
        (("c1", "--service", "gateway"), "gateway cannot be replayed"),
        (("c1", "--service", "no_such_module:build"), "cannot import 'no_such_module'"),
    ],
)
def test_a_bad_invocation_is_one_line_and_exit_2(args: tuple[str, ...], says: str) -> None:
    result = replay(*args)
    assert result.exit_code == 2, result.output
    assert says in result.output
