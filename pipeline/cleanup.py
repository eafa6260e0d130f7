"""Human cleanup: the rules by which an answer counts as resolved or reopened, and the
rates a dashboard or a page shows, shared by the agent (its live metrics) and the
console (its page over the topics it reads).

An answer to a user's turn is *reopened* when, within the cleanup window after it, the
conversation is handed to a person, an operator replies, or the user asks the same again
(:func:`repeats`); otherwise it is resolved. A :class:`Tally` adds the signals up and
says the rates: handoffs per conversation, the first-answer-resolved rate, operator
replies per conversation, dead letters per 1,000 turns.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

REOPENED_BY = ("handoff", "operator_reply", "repeat_question")
APPROVAL_OUTCOMES = ("requested", "approved", "edited", "denied", "expired")
# Who asks for a handoff (pipeline_handoffs_total counts by it too).
HANDOFF_REQUESTERS = ("user", "model", "webhook", "failed_turns", "operator")
_WORD = re.compile(r"\w{3,}")


def repeats(question: str, text: str) -> bool:
    """Whether ``text`` asks ``question`` again: it shares at least half of the
    question's words of three letters or more (or is the same, for a shorter one)."""
    asked = set(_WORD.findall(question.lower()))
    again = set(_WORD.findall(text.lower()))
    if not asked:
        return question.strip().lower() == text.strip().lower()
    return len(asked & again) * 2 >= len(asked)


def within(answer: dict[str, Any] | None, at_millis: int, window_millis: int) -> bool:
    """Whether something at ``at_millis`` reopens ``answer`` ({"at", "question",
    "version"}): it came within the window after it."""
    return answer is not None and 0 <= at_millis - int(answer["at"]) <= window_millis


@dataclass(slots=True)
class Tally:
    """The signals added up, and the rates they give."""

    conversations: int = 0
    turns: int = 0
    handoffs: int = 0
    answers: int = 0
    reopened: Counter[str] = field(default_factory=Counter)
    approvals: Counter[str] = field(default_factory=Counter)
    operator_replies: int = 0
    dead_letters: int = 0

    @property
    def handoff_rate(self) -> float | None:
        return self.handoffs / self.conversations if self.conversations else None

    @property
    def resolved_rate(self) -> float | None:
        """Answers not reopened, of all answers."""
        return 1 - sum(self.reopened.values()) / self.answers if self.answers else None

    @property
    def replies_per_conversation(self) -> float | None:
        return self.operator_replies / self.conversations if self.conversations else None

    @property
    def dead_letters_per_1000_turns(self) -> float | None:
        return 1000 * self.dead_letters / self.turns if self.turns else None
