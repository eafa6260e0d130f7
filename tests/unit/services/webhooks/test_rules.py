"""Webhook rules: matching, templating, and clear errors for invalid rules files."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.errors import RulesError, TemplateError
from pipeline.services.webhooks.rules import RuleSet, render
from tests.paths import REPO

RULES = """
rules:
  - name: resolved
    source: zendesk
    event: ticket.resolved
    when:
      ticket.priority: [high, urgent]
      ticket.reopened: false
    conversation: "conv-{ticket.requester.id}"
    facts:
      ticket_id: "{ticket.id}"
      first_tag: "{ticket.tags.0}"
      status: resolved
      attempts: 3
    proactive_message: "Ticket #{ticket.id} is resolved. Is the issue solved? {{yes/no}}"
  - source: zendesk
    event: "*"
    facts:
      last_event: "{ticket.status|unknown}"
"""

RULE = "rules:\n  - source: s\n    event: e\n"
PAYLOAD = {
    "event": "ticket.resolved",
    "conversation_id": "c1",
    "ticket": {
        "id": 42,
        "priority": "high",
        "reopened": False,
        "tags": ["billing", "vip"],
        "requester": {"id": "u7"},
    },
}


def test_first_matching_rule_renders_its_outcome() -> None:
    rules = RuleSet.parse(RULES)
    rule = rules.first_match("zendesk", "ticket.resolved", PAYLOAD)
    assert rule is not None and rule.label == "resolved"
    outcome = rule.apply(PAYLOAD)
    assert outcome.conversation_id == "conv-u7"
    assert outcome.facts == {
        "ticket_id": "42",
        "first_tag": "billing",
        "status": "resolved",
        "attempts": "3",
    }
    assert outcome.proactive_message == "Ticket #42 is resolved. Is the issue solved? {yes/no}"


def test_conditions_and_wildcards() -> None:
    rules = RuleSet.parse(RULES)
    low = {**PAYLOAD, "ticket": {**PAYLOAD["ticket"], "priority": "low"}}
    fallback = rules.first_match("zendesk", "ticket.resolved", low)
    assert fallback is not None and fallback.label == "zendesk/*"
    assert fallback.apply(low).facts == {"last_event": "unknown"}
    assert fallback.apply({"ticket": {"status": "open"}}).facts == {"last_event": "open"}
    reopened = {**PAYLOAD, "ticket": {**PAYLOAD["ticket"], "reopened": True}}
    assert rules.first_match("zendesk", "ticket.resolved", reopened) is fallback
    assert rules.first_match("hubspot", "ticket.resolved", PAYLOAD) is None
    assert rules.first_match("zendesk", "ticket.resolved", None) is fallback


def test_missing_template_fields() -> None:
    with pytest.raises(TemplateError, match=r"no value at 'ticket\.id'"):
        render("#{ticket.id}", {"ticket": {}})
    with pytest.raises(TemplateError, match="not a plain value"):
        render("{ticket}", {"ticket": {"id": 1}})
    assert render("{a|}-{b.c|none}", {}) == "-none"
    assert render("{x} {y}", {"x": True, "y": 1.5}) == "true 1.5"
    # Nothing but lookups: format specs and attribute syntax are just unknown paths.
    with pytest.raises(TemplateError):
        render("{__class__}", {})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("rules: [", "is not valid YAML"),
        ("- a\n- b", "expected a mapping with a 'rules' list"),
        ("rules:\n  - event: x\n", r"rules\.0\.source: Field required"),
        ("rules:\n  - source: s\n    event: e\n    emit: email\n", r"rules\.0\.emit"),
        ("rules:\n  - source: s\n    event: e\n    colour: red\n", r"rules\.0\.colour: Extra"),
        (RULE + "    when: {'a..b': 1}\n", "not a dotted payload path"),
        (RULE + "    proactive_message: 'hi {0.x!r}'\n", "bad placeholder"),
        (RULE + "    proactive_message: 'a } b'\n", "bad placeholder"),
        ("rules:\n  - source: s\n    event: e\n    facts: {a: [1]}\n", r"rules\.0\.facts\.a"),
        ("paths: []", r"paths: Extra inputs"),
    ],
)
def test_invalid_rules_files_say_where(text: str, message: str) -> None:
    with pytest.raises(RulesError, match=message):
        RuleSet.parse(text, "rules.yaml")


def test_empty_and_missing_files(tmp_path: Path) -> None:
    assert len(RuleSet.parse("")) == 0
    assert len(RuleSet.parse("{}")) == 0
    with pytest.raises(RulesError, match="cannot read the webhook rules file"):
        RuleSet.load(tmp_path / "nope.yaml")


def test_shipped_example_asks_whether_a_resolved_ticket_is_solved() -> None:
    rules = RuleSet.load(REPO / "deploy" / "webhooks" / "rules.yaml")
    payload = {"event": "ticket.resolved", "conversation_id": "c1", "ticket_id": "T-9"}
    rule = rules.first_match("zendesk", "ticket.resolved", payload)
    assert rule is not None
    outcome = rule.apply(payload)
    assert outcome.facts["ticket_id"] == "T-9"
    assert outcome.proactive_message is not None
    assert "Is the issue solved" in outcome.proactive_message


def test_helm_values_example_is_a_valid_rules_file() -> None:
    text = "rules:\n  - source: zendesk\n    event: ticket.updated\n    emit: context_updated\n"
    assert len(RuleSet.parse(text)) == 1
