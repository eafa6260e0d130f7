"""A recorded set saved to a file and read back."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.errors import EvaluationError
from pipeline.evaluation.recorded_set import RecordedConversation, RecordedSet


def test_a_set_reads_back_as_it_was_saved(tmp_path: Path) -> None:
    made = RecordedSet(
        (
            RecordedConversation("web:a:1", "a", "web", 2, {"message_received": (3, 9)}),
            RecordedConversation("slack:b:2", "b", "slack", 0, {"response_ready": (0, 4)}),
        ),
        "p.",
        {"sample": 2, "seed": 0},
    )
    path = tmp_path / "set.json"
    made.save(path)
    assert RecordedSet.load(path) == made
    assert list(made.by_partition()) == [0, 2]


def test_a_file_that_is_not_a_set_is_refused(tmp_path: Path) -> None:
    other = tmp_path / "other.json"
    other.write_text('{"format": "something else"}')
    with pytest.raises(EvaluationError, match="is not a recorded set"):
        RecordedSet.load(other)
    damaged = tmp_path / "damaged.json"
    damaged.write_text('{"format": "pipeline-recorded-set/1", "conversations": [{}]}')
    with pytest.raises(EvaluationError, match="is damaged"):
        RecordedSet.load(damaged)
    with pytest.raises(EvaluationError, match="cannot read"):
        RecordedSet.load(tmp_path / "missing.json")
