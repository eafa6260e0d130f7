"""How one event of a conversation timeline is shown."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

from pipeline.events.model import Event, Metadata
from pipeline.timeline import Entry

OCCURRED = datetime(2024, 5, 17, 9, 30, 12, 345000, tzinfo=UTC)
CAUSE = uuid.UUID("66666666-7777-4888-9999-aaaaaaaaaaaa")


def entry() -> Entry:
    metadata = Metadata(
        uuid.UUID("3f2a5a52-8c1e-4d5e-9f1a-0c4b5d6e7f80"),
        "response_ready",
        "conv-1",
        "acme",
        uuid.UUID("11111111-2222-4333-8444-555555555555"),
        CAUSE,
        1715938212345,
        "agent",
    )
    return Entry("t.response_ready", 2, 40, Event(metadata, {"text": "12*7 = 84"}))


def test_json_shows_times_in_iso_8601_and_ids_as_text() -> None:
    shown = entry().as_json()
    json.dumps(shown)  # plain JSON values only
    meta = shown["event"]["metadata"]
    assert meta["occurred_at"] == OCCURRED.isoformat()
    assert meta["event_id"] == "3f2a5a52-8c1e-4d5e-9f1a-0c4b5d6e7f80"
    assert meta["causation_id"] == str(CAUSE)
    assert shown["event"]["text"] == "12*7 = 84"
    assert (shown["topic"], shown["partition"], shown["offset"]) == ("t.response_ready", 2, 40)


def test_line_names_time_type_ids_and_summary() -> None:
    line = entry().line()
    assert line.startswith("09:30:12.345  response_ready")
    assert "3f2a5a52 <- 66666666" in line
    assert "12*7 = 84" in line


def test_an_operators_decision_on_an_uncertain_call_names_the_operator() -> None:
    metadata = Metadata.new("tool_outcome_decided", "conv-1", tenant_id="acme", producer="console")
    data = {
        "call_id": "call_1",
        "tool": "refund",
        "outcome": "done",
        "operator_id": "ada",
        "result_json": None,
        "note": "seen in the shop",
    }
    shown = Entry("t.tool_outcome_decided", 0, 3, Event(metadata, data)).summary()
    assert shown == "refund done by ada: seen in the shop"


def test_a_fold_of_the_history_says_how_much_was_folded() -> None:
    metadata = Metadata.new("history_summarized", "conv-1", tenant_id="acme", producer="agent")
    data = {
        "summary": "Summary of the earlier conversation:\n- user: my order is 1234",
        "folded_messages": 12,
        "folded_tokens": 3400,
        "budget_tokens": 120000,
    }
    shown = Entry("t.history_summarized", 0, 4, Event(metadata, data)).summary()
    assert shown.startswith("12 messages (3400 tokens) folded into the summary: Summary of")
    assert "my order is 1234" in shown
