"""The human-cleanup page's fold: the same tallies whatever order the events arrive in,
per tenant and agent version."""

from __future__ import annotations

import random
import uuid
from datetime import timedelta
from typing import Any

from pipeline.events.model import Event, Metadata, utc_now
from pipeline.services.console.cleanup import CleanupFold

T0 = utc_now()


def event(
    event_type: str, seconds: float, conversation: str = "c1", tenant: str = "acme", **data: Any
) -> Event:
    metadata = Metadata(
        uuid.uuid4(),
        event_type,
        conversation,
        tenant,
        uuid.uuid4(),
        None,
        T0 + timedelta(seconds=seconds),
        "agent" if "agent_version" in data else "gateway",
    )
    return Event(metadata, data)


def user(seconds: float, text: str, conversation: str = "c1", tenant: str = "acme") -> Event:
    return event("message_received", seconds, conversation, tenant, text=text)


def answer(seconds: float, version: str, conversation: str = "c1", tenant: str = "acme") -> Event:
    return event(
        "response_ready",
        seconds,
        conversation,
        tenant,
        text="ok",
        proactive=False,
        agent_version=version,
    )


STORY = [
    # c1 (v1): asked twice (a repeat), then taken over and replied to by an operator.
    user(0, "where is my parcel 1234?"),
    answer(1, "v1"),
    user(2, "my parcel 1234, where is it?"),
    answer(3, "v1"),
    event("operator_message", 4, operator_id="ada", text="Let me look."),
    event("operator_message", 5, operator_id="ada", text="Found it."),
    event("handoff_released", 6, operator_id="ada", note=None),
    # c2 (v2, another tenant): an approval edited, another denied, one expired.
    user(0, "refund me", "c2", "beta"),
    event("approval_requested", 1, "c2", "beta", approval_id="a1", agent_version="v2"),
    event("approval_decided", 2, "c2", "beta", decision="approved", arguments_json="{}"),
    event("approval_requested", 3, "c2", "beta", approval_id="a2", agent_version="v2"),
    event("approval_decided", 4, "c2", "beta", decision="denied", arguments_json=None),
    event("approval_requested", 5, "c2", "beta", approval_id="a3", agent_version="v2"),
    event(
        "timer_fired",
        9,
        "c2",
        "beta",
        purpose="approval_expiry",
        payload_json='{"approval_id": "a3"}',
    ),
    answer(10, "v2", "c2", "beta"),
    # c3 (v2): answered, nothing after it.
    user(0, "hello", "c3"),
    answer(1, "v2", "c3"),
]


def test_the_tallies_are_the_same_whatever_the_order_of_arrival() -> None:
    expected = None
    for seed in range(5):
        story = list(STORY)
        random.Random(seed).shuffle(story)
        fold = CleanupFold(window_seconds=600, max_conversations=10)
        fold.apply_all(story)
        rows = {(r.tenant, r.version): r.tally for r in fold.rows({"c3": 2})}
        summary = {
            key: (
                t.conversations,
                t.turns,
                t.answers,
                dict(t.reopened),
                t.handoffs,
                t.operator_replies,
                dict(t.approvals),
                t.dead_letters,
            )
            for key, t in rows.items()
        }
        expected = expected or summary
        assert summary == expected
    assert expected == {
        ("acme", "v1"): (1, 2, 2, {"repeat_question": 1, "handoff": 1}, 1, 2, {}, 0),
        ("acme", "v2"): (1, 1, 1, {}, 0, 0, {}, 2),
        ("beta", "v2"): (
            1,
            1,
            1,
            {},
            0,
            0,
            {"requested": 3, "edited": 1, "denied": 1, "expired": 1},
            0,
        ),
    }
    tally = rows[("acme", "v1")]
    assert (tally.handoff_rate, tally.resolved_rate) == (1.0, 0.0)
    assert rows[("acme", "v2")].dead_letters_per_1000_turns == 2000.0


def test_an_answer_outside_the_window_is_not_reopened() -> None:
    fold = CleanupFold(window_seconds=1, max_conversations=10)
    fold.apply_all([user(0, "hi"), answer(1, "v1"), user(5, "hi")])
    [row] = fold.rows()
    assert (row.tally.answers, sum(row.tally.reopened.values())) == (1, 0)
