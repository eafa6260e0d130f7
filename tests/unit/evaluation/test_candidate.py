"""A candidate's settings: dotted overrides, checked as at start."""

from __future__ import annotations

import pytest

from pipeline.config import Settings
from pipeline.errors import ConfigError
from pipeline.evaluation.candidate import Candidate, parse_overrides


def test_overrides_are_nested_and_read_as_json_when_they_are() -> None:
    assert parse_overrides(
        ["llm.model=gpt-4o", "agent.max_tool_depth=2", 'agent.approval_tools={"*": ["refund"]}']
    ) == {
        "llm": {"model": "gpt-4o"},
        "agent": {"max_tool_depth": 2, "approval_tools": {"*": ["refund"]}},
    }
    assert parse_overrides(["llm.system_prompt=Be brief."]) == {
        "llm": {"system_prompt": "Be brief."}
    }
    with pytest.raises(ConfigError, match="NAME=VALUE"):
        parse_overrides(["llm.model"])


def test_the_candidate_s_settings_keep_the_rest_and_are_checked() -> None:
    base = Settings(topic_prefix="p.", agent={"history_window": 7})
    candidate = Candidate("agent", parse_overrides(["llm.model=gpt-4o", "agent.max_tool_depth=2"]))
    settings = candidate.settings(base)
    assert (settings.llm.model, settings.agent.max_tool_depth) == ("gpt-4o", 2)
    assert (settings.topic_prefix, settings.agent.history_window) == ("p.", 7)
    assert (
        candidate.label == 'agent with {"agent": {"max_tool_depth": 2}, "llm": {"model": "gpt-4o"}}'
    )
    with pytest.raises(ConfigError, match="PIPELINE_AGENT__MAX_TOOL_DEPTH"):
        Candidate("agent", {"agent": {"max_tool_depth": -1}}).settings(base)
    with pytest.raises(ConfigError, match="gateway is not a service with handlers"):
        Candidate("gateway").build(base, None)
