"""The human-cleanup page's figures, folded from the topics the console reads.

The agent counts human cleanup live as metrics (:mod:`pipeline.services.agent.cleanup`);
this page shows the same signals over the console's own look-back, per tenant and agent
version, with the same rules (:mod:`pipeline.cleanup`). The reader hands events over in
any order across topics, so each conversation keeps its moments (user messages, the
agent's answers, handoffs and releases, operator replies, approvals) and they are put in
time order when the page is drawn. A moment no agent wrote (a user's message, an
operator's) counts under the version of the agent's nearest answer in the conversation.
Bounded: the conversations with the oldest activity go first, and each keeps its last
:data:`MOMENTS` moments.
"""

from __future__ import annotations

import json
from collections import OrderedDict, deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pipeline.cleanup import Tally, repeats, within
from pipeline.events.model import Event
from pipeline.toolbox.approvals import EXPIRY

MOMENTS = 500
UNKNOWN = "?"  # a conversation no agent event of has been read yet


@dataclass(frozen=True, slots=True)
class Moment:
    at: int  # epoch millis
    kind: str  # user, answer, handoff, release, operator, approval
    version: str | None = None  # the agent's, on the agent's events
    text: str = ""  # a user's message; an approval's outcome


@dataclass(frozen=True, slots=True)
class Row:
    tenant: str
    version: str
    tally: Tally


class CleanupFold:
    """Each conversation's moments, and the tallies per tenant and version they give."""

    def __init__(self, window_seconds: float, max_conversations: int) -> None:
        self.window_millis = int(window_seconds * 1000)
        self.max_conversations = max_conversations
        self.conversations: OrderedDict[str, tuple[str, deque[Moment]]] = OrderedDict()

    def apply_all(self, events: Iterable[Event]) -> None:
        for event in events:
            moment = _moment(event)
            if moment is None:
                continue
            key = event.conversation_id
            found = self.conversations.get(key)
            if found is None:
                found = self.conversations[key] = (event.metadata.tenant_id, deque(maxlen=MOMENTS))
                while len(self.conversations) > self.max_conversations:
                    self.conversations.popitem(last=False)
            else:
                self.conversations.move_to_end(key)
            found[1].append(moment)

    def rows(self, dead_letters: dict[str, int] | None = None) -> list[Row]:
        """Per (tenant, version), the signals of the conversations in view;
        ``dead_letters`` counts the dead letters of each conversation, when known."""
        tallies: dict[tuple[str, str], Tally] = {}
        for conversation_id, (tenant, moments) in self.conversations.items():
            for version, tally in self._tally(list(moments)).items():
                total = tallies.setdefault((tenant, version), Tally())
                _add(total, tally)
            if dead_letters and conversation_id in dead_letters:
                version = _last_version(list(moments))
                tally = tallies.setdefault((tenant, version), Tally())
                tally.dead_letters += dead_letters[conversation_id]
        return [Row(t, v, tally) for (t, v), tally in sorted(tallies.items())]

    def tenant_of(self, conversation_id: str) -> str | None:
        found = self.conversations.get(conversation_id)
        return found[0] if found else None

    def _tally(self, moments: list[Moment]) -> dict[str, Tally]:
        moments.sort(key=lambda m: m.at)
        versions = _versions(moments)
        out: dict[str, Tally] = {}
        last: dict[str, Any] | None = None
        handed_off = started = False
        question = ""

        def reopen(at: int, reason: str) -> None:
            nonlocal last
            if last is not None and within(last, at, self.window_millis):
                out.setdefault(last["version"], Tally()).reopened[reason] += 1
            last = None

        for moment, version in zip(moments, versions, strict=True):
            tally = out.setdefault(version, Tally())
            if moment.kind == "user":
                if not started:
                    tally.conversations += 1
                    started = True
                if handed_off:
                    continue
                tally.turns += 1
                if last is not None and repeats(last["question"], moment.text):
                    reopen(moment.at, "repeat_question")
                question = moment.text
            elif moment.kind == "answer" and not handed_off:
                tally.answers += 1
                last = {"at": moment.at, "question": question, "version": version}
            elif moment.kind == "handoff" and not handed_off:
                handed_off = True
                tally.handoffs += 1
                reopen(moment.at, "handoff")
            elif moment.kind == "release":
                handed_off = False
            elif moment.kind == "operator":
                tally.operator_replies += 1
                if not handed_off:  # an operator who writes first takes it
                    handed_off = True
                    tally.handoffs += 1
                reopen(moment.at, "handoff")
            elif moment.kind == "approval":
                tally.approvals[moment.text] += 1
        return out


def _moment(event: Event) -> Moment | None:
    at, kind = event.metadata.occurred_millis, event.type
    version = event.agent_version
    if kind == "message_received":
        return Moment(at, "user", None, str(event.get("text") or ""))
    if kind == "response_ready" and version and not event.get("proactive"):
        return Moment(at, "answer", version)
    if kind == "handoff_requested":
        return Moment(at, "handoff", version)
    if kind == "handoff_released":
        return Moment(at, "release")
    if kind == "operator_message":
        return Moment(at, "operator")
    if kind == "approval_requested":
        return Moment(at, "approval", version, "requested")
    if kind == "approval_decided":
        edited = event.get("decision") == "approved" and event.get("arguments_json") is not None
        return Moment(at, "approval", None, "edited" if edited else str(event.get("decision")))
    if kind == "timer_fired" and event.get("purpose") == EXPIRY:
        try:
            payload = json.loads(event.get("payload_json") or "{}")
        except ValueError:
            return None
        if isinstance(payload, dict) and payload.get("approval_id"):
            return Moment(at, "approval", None, "expired")
    return None


def _versions(moments: list[Moment]) -> list[str]:
    """Each moment's version: its own, else the nearest agent moment's after it, else
    before it."""
    after: list[str] = []
    following = None
    for moment in reversed(moments):
        following = moment.version or following
        after.append(following or "")
    after.reverse()
    found: list[str] = []
    preceding = None
    for moment, later in zip(moments, after, strict=True):
        preceding = moment.version or preceding
        found.append(moment.version or later or preceding or UNKNOWN)
    return found


def _last_version(moments: list[Moment]) -> str:
    known = [m for m in moments if m.version]
    return max(known, key=lambda m: m.at).version or UNKNOWN if known else UNKNOWN


def _add(total: Tally, tally: Tally) -> None:
    total.conversations += tally.conversations
    total.turns += tally.turns
    total.handoffs += tally.handoffs
    total.answers += tally.answers
    total.reopened.update(tally.reopened)
    total.approvals.update(tally.approvals)
    total.operator_replies += tally.operator_replies
    total.dead_letters += tally.dead_letters
