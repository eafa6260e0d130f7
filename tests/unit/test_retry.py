"""The one retry helper: backoff bounds, Retry-After as a capped floor, and no copies."""

from __future__ import annotations

import ast
from pathlib import Path

from pipeline.retry import RetryPolicy, backoff_seconds

PACKAGE = Path(__file__).resolve().parents[2] / "pipeline"


def test_backoff_doubles_and_stays_in_the_upper_half_of_its_ceiling() -> None:
    for attempt, ceiling in [(1, 0.2), (2, 0.4), (3, 0.8), (10, 10.0)]:
        delays = [backoff_seconds(attempt, 0.2, 10.0) for _ in range(100)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays), (attempt, min(delays))


def test_a_policy_counts_attempts_and_takes_retry_after_as_a_capped_floor() -> None:
    policy = RetryPolicy(
        max_attempts=3, initial_seconds=0.1, max_seconds=1.0, retry_after_max_seconds=30.0
    )
    assert [policy.exhausted(a) for a in (1, 2, 3)] == [False, False, True]
    assert policy.delay(1, 5.0) == 5.0
    assert policy.delay(1, 3600.0) == 30.0
    assert 0.05 <= policy.delay(1, 0.0) <= 0.1


def test_no_module_has_a_retry_loop_helper_of_its_own() -> None:
    """The runtime, delivery and the OpenAI client each had one; now there is one."""
    copies = []
    for path in PACKAGE.rglob("*.py"):
        if path == PACKAGE / "retry.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) and any(
                word in node.name.lower() for word in ("retry_after", "backoff", "retrypolicy")
            ):
                copies.append(f"{path.relative_to(PACKAGE)}: {node.name}")
            if isinstance(node, ast.Call) and ast.unparse(node.func) == "parsedate_to_datetime":
                copies.append(f"{path.relative_to(PACKAGE)}: parses an HTTP date")
    assert not copies, copies
