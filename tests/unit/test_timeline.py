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


def test_a_denial_shows_the_internal_reason_and_what_the_customer_was_told() -> None:
    metadata = Metadata.new("approval_decided", "conv-1", tenant_id="acme", producer="console")
    data = {
        "approval_id": "a1",
        "decision": "denied",
        "operator_id": "ada",
        "arguments_json": None,
        "note": "we cannot refund this order",
        "internal_reason": "the card is flagged",
    }
    shown = Entry("t.approval_decided", 0, 3, Event(metadata, data)).summary()
    assert shown == (
        "denied by ada: the card is flagged (the customer was told: we cannot refund this order)"
    )
    older = {**data, "internal_reason": None}
    assert Entry("t.approval_decided", 0, 3, Event(metadata, older)).summary() == (
        "denied by ada: we cannot refund this order"
    )


def test_the_agents_outcome_of_an_operators_action_says_what_became_of_it() -> None:
    metadata = Metadata.new("operator_action_handled", "conv-1", tenant_id="acme", producer="agent")
    data = {
        "action": "handoff_released",
        "operator_id": "ada",
        "outcome": "ignored",
        "reason": "no person has this conversation",
        "agent_version": "1.0",
    }
    shown = Entry("t.operator_action_handled", 0, 3, Event(metadata, data)).summary()
    assert shown == "handoff_released by ada ignored: no person has this conversation"
    accepted = {**data, "outcome": "accepted", "reason": None}
    assert Entry("t.x", 0, 4, Event(metadata, accepted)).summary() == (
        "handoff_released by ada accepted"
    )


def test_an_own_event_types_what_is_its_marked_or_first_string_field() -> None:
    from pipeline.config import Settings
    from pipeline.events.catalog import load_settings_catalog
    from pipeline.timeline import summary_field
    from tests.paths import REPO

    example = REPO / "examples" / "own_agent" / "schemas"
    catalog = load_settings_catalog(Settings(extra_schema_dirs=(example,)))
    assert summary_field(catalog.reader("order_placed").parsed) == "order_id"
    marked = {
        "name": "acme.support.FeedbackGiven",
        "fields": [
            {"name": "metadata", "type": "pipeline.events.Metadata"},
            {"name": "rating", "type": "string"},
            {"name": "comment", "type": ["null", "string"], "summary": True},
        ],
    }
    assert summary_field(marked) == "comment"
    assert summary_field(catalog.reader("response_ready").parsed) is None  # bundled: its own
    assert (
        summary_field({"name": "acme.Counter", "fields": [{"name": "n", "type": "long"}]}) is None
    )

    base = entry()
    meta = base.event.metadata
    own = Event(meta, {"order_id": "A-1001", "total_cents": 4599})
    shown = Entry("t.order_placed", 2, 41, own, "order_id")
    assert shown.summary() == "A-1001"
    assert shown.line().endswith(" agent      A-1001")
    assert Entry("t.order_placed", 2, 41, own).summary() == ""


def test_an_agent_event_names_the_agent_version_beside_its_producer() -> None:
    plain = entry()
    assert plain.producer() == "agent"
    versioned = Entry(
        plain.topic,
        plain.partition,
        plain.offset,
        Event(plain.event.metadata, {"text": "12*7 = 84", "agent_version": "2024.06-b"}),
    )
    assert versioned.producer() == "agent@2024.06-b"
    assert " agent@2024.06-b 12*7 = 84" in versioned.line()
    assert versioned.as_json()["event"]["agent_version"] == "2024.06-b"
