"""Journal steps: their identity, and their JSON form in a conversation's value."""

from __future__ import annotations

import pytest

from pipeline.journal import DONE, INTENT, Step, step_id
from pipeline.journal.steps import decode_steps, encode_steps


def test_a_step_id_names_the_event_the_kind_and_the_place() -> None:
    assert step_id("e1", "model") == "e1/model/0"
    assert step_id("e1", "tool", 2) == "e1/tool/2"


def test_steps_round_trip_through_json_with_only_the_fields_they_have() -> None:
    intent = Step("e1/tool/0", "tool", INTENT, ("t.tool_called", 3, 17), 1000, key="k1")
    done = intent.moved(DONE, 2000, result={"value": 84})
    value = encode_steps([intent, done])
    assert value["v"] == 1
    assert "result" not in value["steps"][0] and "error" not in value["steps"][0]
    assert decode_steps(value) == [intent, done]
    assert decode_steps(None) == [] and decode_steps({}) == []
    assert intent.uncertain and not done.uncertain


def test_an_unknown_state_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown journal step state"):
        Step.from_json({"id": "x", "kind": "k", "state": "odd", "src": ["t", 0, 0], "at": 0})
