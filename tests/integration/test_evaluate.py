"""``pipeline evaluate`` on 50 conversations the real agent and tools recorded on a real
broker (web and Slack, tool calls, a handoff, an approval): the same agent changes
nothing and passes; a changed rule lists the changed conversations with their diffs and
fails its threshold; a team's check failing on one conversation is named in the reports;
the JSON report validates against its schema and nothing reaches the live topics."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
from click.testing import CliRunner, Result

from pipeline.cli import main
from pipeline.evaluation.report import SCHEMA
from pipeline.events.model import Event, Metadata
from pipeline.services import tools
from pipeline.services.agent import build
from tests.integration.runtime_support import Record, read_all_async, running, settings_for
from tests.integration.test_agent_pipeline import produce_in_order
from tests.integration.test_replay import high_watermarks

TOPICS = (
    "message_received",
    "tool_called",
    "tool_result",
    "response_ready",
    "timer_requested",
    "timer_fired",
    "context_updated",
    "handoff_requested",
    "operator_message",
    "handoff_released",
    "operator_action_handled",
    "approval_requested",
    "approval_decided",
    "agent_state_changelog",
    "agent_journal",
    "response_delta",
    "history_summarized",
    "dead_letters",
    "tool_catalog",
    "tools_journal",
    "tool_outcome_decided",
)
AGENT = {"approval_tools": {"*": ["current_time"]}}
# The Slack workspace "beta" is tenant beta's: the agent refuses its conversations to any
# other tenant, live and in the replay alike.
GATEWAY = {"slack_teams": {"beta": "beta"}}
CONVERSATIONS = 50
HANDED_OFF, APPROVAL = "web:acme:u3", "web:acme:u4"
CHECK = """
def check_never_hands_over(conversation):
    for answer in conversation.answers:
        assert "passing you to a person" not in answer, f"hands over: {answer!r}"


def check_answers_every_message(conversation):
    assert len(conversation.answers) >= 1
"""


def conversation_id(index: int) -> str:
    return f"web:acme:u{index}" if index % 2 == 0 or index in (3,) else f"slack:beta:C{index}"


def answered(messages: list[Event]) -> Callable[[list[Record]], bool]:
    """Done once every message's turn has an answer (after its tool calls, if any)."""
    wanted = {str(e.id) for e in messages}

    def done(records: list[Record]) -> bool:
        return wanted <= {str(r.event().metadata.correlation_id) for r in records}

    return done


def user_message(index: int, text: str) -> Event:
    conversation = conversation_id(index)
    slack = conversation.startswith("slack")
    tenant = "beta" if slack else "acme"
    address = (
        {"channel": "slack", "address": f"C{index}", "thread_id": f"17000.{index}"}
        if slack
        else {"channel": "web", "address": "http://127.0.0.1/cb", "thread_id": None}
    )
    metadata = Metadata.new("message_received", conversation, tenant_id=tenant, producer="test")
    return Event(
        metadata,
        {
            "channel": "slack" if slack else "web",
            "sender_id": f"user-{index}",
            "text": text,
            "reply_to": address,
            "external_id": f"m-{index}-{len(text)}",
        },
    )


def first_text(index: int) -> str:
    if index == 3:
        return "I want to talk to a human"
    if index == 4:
        return "what time is it?"
    return [f"what is {index}*7?", "hello", "good morning", "my parcel is late"][index % 4]


async def evaluate(bootstrap: str, prefix: str, *args: str) -> Result:
    """``pipeline evaluate ARGS`` on a thread (it runs an event loop of its own)."""
    env = {
        "PIPELINE_BOOTSTRAP_SERVERS": bootstrap,
        "PIPELINE_TOPIC_PREFIX": prefix,
        "PIPELINE_AGENT__APPROVAL_TOOLS": json.dumps(AGENT["approval_tools"]),
        "PIPELINE_GATEWAY__SLACK_TEAMS": json.dumps(GATEWAY["slack_teams"]),
    }
    return await asyncio.to_thread(CliRunner().invoke, main, ["evaluate", *args], env=env)


def report(path: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(path.read_text())
    jsonschema.validate(loaded, json.loads(SCHEMA.read_text()))
    return loaded


async def record_two_turns(bootstrap: str, prefix: str) -> None:
    """Every conversation's first turn, then, once all are answered, its second."""
    inbox, replies = prefix + "message_received", prefix + "response_ready"
    first = [user_message(i, first_text(i)) for i in range(CONVERSATIONS)]
    produce_in_order(bootstrap, inbox, first)
    await read_all_async(bootstrap, replies, answered(first), 120)
    # The second turn once every first one is answered (tool calls included).
    second = [user_message(i, "what did I say?") for i in range(CONVERSATIONS) if i != 3]
    produce_in_order(bootstrap, inbox, second)
    await read_all_async(bootstrap, replies, answered(second), 120)


async def test_evaluate_50_recorded_conversations(
    kafka_bootstrap: str,
    topic_prefix: str,
    make_topics: Callable[..., list[str]],
    tmp_path: Path,
) -> None:
    make_topics(*TOPICS, partitions=3)
    settings = settings_for(kafka_bootstrap, topic_prefix, agent=AGENT, gateway=GATEWAY)
    async with running(tools.build(settings)):
        # The agent starts once current_time is advertised: a turn offered a catalog still
        # being written would be recorded without the tool the replay then offers.
        await read_all_async(
            kafka_bootstrap,
            topic_prefix + "tool_catalog",
            lambda records: "current_time" in {r.key for r in records},
            60,
        )
        async with running(build(settings)):
            await record_two_turns(kafka_bootstrap, topic_prefix)
    before = high_watermarks(kafka_bootstrap, topic_prefix)
    recorded_set, same_json = tmp_path / "set.json", tmp_path / "same.json"

    # (a) The agent as it runs: nothing changes, exit 0, and the set is saved.
    same = await evaluate(
        kafka_bootstrap,
        topic_prefix,
        *("--save-set", str(recorded_set), "--json", str(same_json)),
        *("--html", str(tmp_path / "same.html"), "--fail-if", "changed_answers>5%"),
    )
    assert same.exit_code == 0, same.output
    assert f"{CONVERSATIONS} conversation(s) evaluated against agent: 0 changed" in same.output
    unchanged = report(same_json)
    summary = unchanged["summary"]
    assert summary["conversations"] == CONVERSATIONS
    assert summary["counts"]["recorded_tool_calls"] >= 10
    assert summary["counts"]["recorded_handoffs"] == 1
    assert summary["counts"]["recorded_approvals"] == 1
    channels = {c["channel"] for c in unchanged["conversations"]}
    assert channels == {"web", "slack"}
    saved = json.loads(recorded_set.read_text())
    assert len(saved["conversations"]) == CONVERSATIONS

    # (b) A changed handoff rule: the conversations it changes, with their diffs, exit 1.
    changed_json = tmp_path / "changed.json"
    changed = await evaluate(
        kafka_bootstrap,
        topic_prefix,
        *("--set", str(recorded_set), "--json", str(changed_json)),
        *("-o", 'agent.handoff_phrases={"*": ["hello"]}', "--fail-if", "new_handoffs>0"),
        *("--compare-with", str(same_json)),
    )
    assert changed.exit_code == 1, changed.output
    assert "FAIL: threshold new_handoffs>0 crossed" in changed.output
    hello = {conversation_id(i) for i in range(CONVERSATIONS) if first_text(i) == "hello"}
    results = report(changed_json)
    now_changed = {c["conversation_id"] for c in results["conversations"] if c["changed"]}
    assert now_changed == hello | {HANDED_OFF}
    for conversation in hello | {HANDED_OFF}:
        assert f"changed: {conversation}:" in changed.output
    counts = results["summary"]["counts"]
    assert (counts["new_handoffs"], counts["lost_handoffs"]) == (len(hello), 1)
    [handed] = [c for c in results["conversations"] if c["conversation_id"] == HANDED_OFF]
    [diff] = handed["changes"]
    assert "handoff_requested" in diff["recorded"] and "handoff_requested" not in diff["replayed"]
    assert sorted(results["previous"]["now_changed"]) == sorted(now_changed)
    assert results["baseline"]["spec"] == "agent", "the agent without the override"

    # (c) A team's check failing on the handed-off conversation only: named in the reports.
    checks = tmp_path / "checks.py"
    checks.write_text(CHECK)
    html = tmp_path / "checked.html"
    checked_json = tmp_path / "checked.json"
    checked = await evaluate(
        kafka_bootstrap,
        topic_prefix,
        *("--set", str(recorded_set), "--check", str(checks)),
        *("--json", str(checked_json), "--html", str(html)),
    )
    assert checked.exit_code == 1, checked.output
    assert f"check check_never_hands_over failed on {HANDED_OFF}: hands over" in checked.output
    assert "FAIL: check check_never_hands_over failed on 1 conversation(s)" in checked.output
    graded = report(checked_json)
    assert graded["summary"]["checks"] == {
        "check_answers_every_message": {"passed": CONVERSATIONS},
        "check_never_hands_over": {"passed": CONVERSATIONS - 1, "failed": 1},
    }
    page = html.read_text()
    assert f'id="conversation-{HANDED_OFF}"' in page
    assert "<b>check_never_hands_over</b> failed: hands over" in page

    assert high_watermarks(kafka_bootstrap, topic_prefix) == before, "nothing was produced"
