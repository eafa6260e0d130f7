"""What the console shows live, folded from the topics' events: conversations with
their state, the handoff inbox, pending approvals, tool calls whose outcome is unknown
(:mod:`pipeline.services.console.uncertain`), and what became of each operator action
(:mod:`pipeline.services.console.operator_actions`). (Dead letters are read from their
topic when the page is asked for, :mod:`pipeline.deadletters`; the reader tells the view
of each new one, :meth:`ConsoleView.dead_lettered`, so that the page and a refused
operator action show live.)

The conversation's state is the agent's: a person has it from the agent's
``handoff_requested`` (or an operator's take) until a release the agent accepted, and an
operator's message is listed once the agent took it (``operator_action_handled``), never
on the operator's request alone; a request the agent ignores or refuses changes nothing
and is shown as such, with the reason, on the conversation's page and on the live stream.

The reader (:mod:`pipeline.services.console.feed`) reads several topics at once, so
events of one conversation may arrive out of order across topics (at start above all);
the fold therefore compares occurred-at times instead of trusting arrival order: a
handoff is open when its latest start is later than its latest release, an approval is
pending until a decision or an expiry for it is seen, whichever came first; so is an
uncertain tool call until a decision on it. The view is
bounded: the conversations with the oldest activity go first.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter, OrderedDict, deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pipeline.deadletters import DeadLetterEntry
from pipeline.events.model import Event, utc_now
from pipeline.services.console.access import Access
from pipeline.services.console.operator_actions import (
    ACCEPTED,
    HANDLED_BY_THE_AGENT,
    IGNORED,
    REFUSED,
    ActionLog,
    OperatorAction,
)
from pipeline.services.console.uncertain import UncertainCall, UncertainCalls
from pipeline.toolbox.approvals import EXPIRY

WITH_AGENT = "with the agent"
WAITING_FOR_PERSON = "waiting for a person"
WITH_PERSON = "with a person"
WAITING_FOR_APPROVAL = "waiting for approval"
STATES = (WITH_AGENT, WAITING_FOR_PERSON, WITH_PERSON, WAITING_FOR_APPROVAL)

TOPICS = (
    "message_received",
    "response_ready",
    "delivery_status",
    "tool_called",
    "tool_result",
    "handoff_requested",
    "operator_message",
    "handoff_released",
    "approval_requested",
    "approval_decided",
    "tool_outcome_decided",
    "operator_action_handled",
    "timer_fired",
)
"""The conversation topics the view folds."""
NOTICES_KEPT = 200  # refused and ignored actions the live streams announce
LETTERS_REMEMBERED = 10_000  # dead letters' tenants, to announce their redrives


@dataclass(slots=True)
class Line:
    """One message of a conversation: who wrote it, when, what."""

    at: datetime
    role: str  # user, agent, operator
    who: str
    text: str
    event_id: str = ""
    cause: str | None = None


@dataclass(slots=True)
class Approval:
    approval_id: str
    conversation_id: str
    tenant: str
    tool: str
    arguments_json: str
    reason: str
    requested_at: datetime
    expires_at: datetime


@dataclass(slots=True)
class Conversation:
    conversation_id: str
    tenant: str
    channel: str = ""
    last_activity: datetime = field(default_factory=utc_now)
    handoff_at: datetime | None = None
    handoff_reason: str = ""
    handoff_by: str = ""
    operator: str | None = None
    operator_at: datetime | None = None  # since when ``operator`` has it
    released_at: datetime | None = None
    approvals: dict[str, Approval] = field(default_factory=dict)
    closed_approvals: set[str] = field(default_factory=set)
    uncertain: UncertainCalls = field(default_factory=UncertainCalls)
    lines: deque[Line] = field(default_factory=deque)
    actions: ActionLog = field(default_factory=ActionLog)

    @property
    def handed_off(self) -> bool:
        return self.handoff_at is not None and (
            self.released_at is None or self.handoff_at > self.released_at
        )

    def pending(self, now: datetime | None = None) -> list[Approval]:
        now = now or utc_now()
        return [a for a in self.approvals.values() if a.expires_at > now]

    @property
    def state(self) -> str:
        if self.handed_off:
            return WITH_PERSON if self.operator else WAITING_FOR_PERSON
        if self.pending():
            return WAITING_FOR_APPROVAL
        return WITH_AGENT

    @property
    def last_text(self) -> str:
        return self.lines[-1].text if self.lines else ""


@dataclass(frozen=True, slots=True)
class Notice:
    """An operator action the agent refused or ignored, for the live streams."""

    seq: int
    tenant: str
    kind: str  # refused | ignored
    action: OperatorAction

    def as_json(self) -> dict[str, str]:
        a = self.action
        return {
            "action_id": a.action_id,
            "action": a.kind,
            "what": a.what,
            "conversation_id": a.conversation_id,
            "status": a.status,
            "reason": a.reason,
        }


_EPOCH = datetime.fromtimestamp(0, UTC)


class ConsoleView:
    """The fold of the topics; :meth:`changed` wakes the live streams."""

    def __init__(self, max_conversations: int, max_messages: int) -> None:
        self.max_conversations = max_conversations
        self.max_messages = max_messages
        self.conversations: OrderedDict[str, Conversation] = OrderedDict()
        self.version = 0
        self.tenant_changes: Counter[str] = Counter()  # events folded, per tenant
        # Dead letters and redrives read, per tenant (None: a letter that does not decode).
        self.letter_changes: Counter[str | None] = Counter()
        self._letter_tenants: OrderedDict[str, str | None] = OrderedDict()
        self.notices: deque[Notice] = deque(maxlen=NOTICES_KEPT)
        self.notice_seq = 0
        self._changed = asyncio.Condition()

    # ------------------------------------------------------------------ reading

    def listed(
        self, tenant: str | None = None, channel: str | None = None, state: str | None = None
    ) -> list[Conversation]:
        """Conversations, newest activity first, filtered."""
        found = [
            c
            for c in self.conversations.values()
            if (not tenant or c.tenant == tenant)
            and (not channel or c.channel == channel)
            and (not state or c.state == state)
        ]
        return sorted(found, key=lambda c: c.last_activity, reverse=True)

    def inbox(self) -> list[Conversation]:
        """Handed-off conversations, the longest waiting first."""
        handed = [c for c in self.conversations.values() if c.handed_off]
        return sorted(
            handed, key=lambda c: (c.operator is not None, c.handoff_at or c.last_activity)
        )

    def pending_approvals(self) -> list[Approval]:
        now = utc_now()
        found = [a for c in self.conversations.values() for a in c.pending(now)]
        return sorted(found, key=lambda a: a.requested_at)

    def approval(self, approval_id: str) -> Approval | None:
        return next((a for a in self.pending_approvals() if a.approval_id == approval_id), None)

    def uncertain_calls(self) -> list[UncertainCall]:
        """Tool calls whose outcome is unknown and not decided yet, the longest waiting
        first."""
        found = [u for c in self.conversations.values() for u in c.uncertain.open.values()]
        return sorted(found, key=lambda u: u.reported_at)

    def uncertain_call(self, call_id: str) -> UncertainCall | None:
        return next((u for u in self.uncertain_calls() if u.call_id == call_id), None)

    def tenants(self) -> list[str]:
        return sorted({c.tenant for c in self.conversations.values()})

    def channels(self) -> list[str]:
        return sorted({c.channel for c in self.conversations.values() if c.channel})

    def action(self, action_id: str) -> OperatorAction | None:
        """An operator action the view knows, by its event id."""
        for conversation in self.conversations.values():
            found = conversation.actions.get(action_id)
            if found is not None:
                return found
        return None

    def letters_seen_by(self, who: Access) -> int:
        """How many dead letters and redrives of ``who``'s tenants were read."""
        return sum(n for tenant, n in self.letter_changes.items() if who.sees(tenant))

    def notices_for(self, who: Access, after: int) -> list[Notice]:
        """The refusals and ignored actions since ``after`` that ``who`` sees."""
        return [n for n in self.notices if n.seq > after and who.sees(n.tenant)]

    def changes_seen_by(self, who: Access) -> int:
        """How many folded events concerned conversations ``who`` sees: what the live
        stream compares, so that an operator hears of no other tenant's activity."""
        if who.all_tenants:
            return sum(self.tenant_changes.values())
        return sum(n for tenant, n in self.tenant_changes.items() if who.sees(tenant))

    async def wait_changed(self, since: int) -> int:
        """Wait until the view changes after version ``since``; the new version."""
        async with self._changed:
            await self._changed.wait_for(lambda: self.version > since)
            return self.version

    # ------------------------------------------------------------------ folding

    async def changed(self) -> None:
        async with self._changed:
            self.version += 1
            self._changed.notify_all()

    def apply_all(self, events: Iterable[Event]) -> int:
        """Fold events; how many changed the view."""
        return sum(1 for event in events if self.apply(event))

    def apply(self, event: Event) -> bool:
        """Fold one event; whether it concerned the view."""
        meta = event.metadata
        if meta.event_type not in TOPICS:
            return False
        if meta.event_type == "timer_fired" and event.get("purpose") != EXPIRY:
            return False
        conversation = self._conversation(meta.conversation_id, meta.tenant_id)
        at = meta.occurred_at
        if at > conversation.last_activity:
            conversation.last_activity = at
            self.conversations.move_to_end(meta.conversation_id)
        getattr(self, f"_on_{meta.event_type}")(conversation, event, at)
        self.tenant_changes[conversation.tenant] += 1
        return True

    def dead_lettered(self, letter: DeadLetterEntry, original: Event | None) -> None:
        """A dead letter was read; when its original is an operator's request, the action
        is refused with the letter's reason (the conversation's state does not change)."""
        self._letter_tenants[letter.dead_letter_id] = letter.tenant
        while len(self._letter_tenants) > LETTERS_REMEMBERED:
            self._letter_tenants.popitem(last=False)
        self.letter_changes[letter.tenant] += 1
        if original is None or original.type not in HANDLED_BY_THE_AGENT:
            return
        meta = original.metadata
        conversation = self.conversations.get(meta.conversation_id)
        if conversation is None or conversation.tenant != meta.tenant_id:
            return  # not in view, or a request made as another tenant: nothing to show
        reason = f"{letter.service}: {letter.error}"
        action = conversation.actions.refused(original, reason, letter.dead_lettered_at)
        if action.status == REFUSED:
            self._notice(conversation, "refused", action)

    def redriven(self, dead_letter_id: str) -> None:
        """A dead letter was redriven (announced to who sees the letter's tenant)."""
        self.letter_changes[self._letter_tenants.get(dead_letter_id)] += 1

    def _notice(self, conversation: Conversation, kind: str, action: OperatorAction) -> None:
        self.notice_seq += 1
        self.notices.append(Notice(self.notice_seq, conversation.tenant, kind, action))
        self.tenant_changes[conversation.tenant] += 1

    def _conversation(self, conversation_id: str, tenant: str) -> Conversation:
        found = self.conversations.get(conversation_id)
        if found is None:
            found = Conversation(conversation_id, tenant, last_activity=_EPOCH)
            self.conversations[conversation_id] = found
            while len(self.conversations) > self.max_conversations:
                self.conversations.popitem(last=False)
        return found

    def _line(self, conversation: Conversation, line: Line) -> None:
        lines = conversation.lines
        if line.event_id and any(seen.event_id == line.event_id for seen in lines):
            return  # read back after the console produced it, or read again
        lines.append(line)
        if len(lines) > 1 and lines[-2].at > line.at:  # arrived out of order
            conversation.lines = deque(sorted(lines, key=lambda item: item.at))
        while len(conversation.lines) > self.max_messages:
            conversation.lines.popleft()

    def _on_message_received(self, c: Conversation, event: Event, at: datetime) -> None:
        c.channel = str(event.get("channel") or c.channel)
        who = event.get("sender_name") or event.get("sender_id") or "user"
        self._line(c, Line(at, "user", str(who), str(event.get("text") or ""), str(event.id)))

    def _on_response_ready(self, c: Conversation, event: Event, at: datetime) -> None:
        if event.metadata.producer == "agent" or not c.channel:
            reply_to = event.get("reply_to") or {}
            c.channel = c.channel or str(reply_to.get("channel") or "")
        cause = str(event.metadata.causation_id) if event.metadata.causation_id else None
        if cause is not None and cause in c.actions:
            return  # an operator's message on its way out: listed as the operator's
        text = str(event.get("text") or "")
        who = event.metadata.producer
        if event.agent_version:
            who = f"{who}@{event.agent_version}"  # the agent's version beside its name
        self._line(c, Line(at, "agent", who, text, str(event.id), cause))

    def _on_delivery_status(self, c: Conversation, event: Event, at: datetime) -> None:
        pass  # activity only

    def _on_tool_called(self, c: Conversation, event: Event, at: datetime) -> None:
        c.uncertain.called(event, at)

    def _on_tool_result(self, c: Conversation, event: Event, at: datetime) -> None:
        c.uncertain.reported(c.conversation_id, event, at)

    def _on_tool_outcome_decided(self, c: Conversation, event: Event, at: datetime) -> None:
        c.uncertain.decided_on(str(event["call_id"]))
        c.actions.requested(event, f"{event.get('tool')} {event.get('outcome')}")

    def _on_handoff_requested(self, c: Conversation, event: Event, at: datetime) -> None:
        if event.get("requested_by") == "operator" and event.metadata.causation_id is None:
            c.actions.requested(event, "took the conversation")  # an operator's take
        if c.handoff_at is None or at > c.handoff_at:
            if not c.handed_off or event.get("requested_by") != "operator":
                c.handoff_at = at
                c.handoff_reason = str(event.get("reason") or "")
                c.handoff_by = str(event.get("requested_by") or "")
                if c.operator_at is None or at > c.operator_at:
                    c.operator, c.operator_at = None, None  # a new handoff: nobody has it yet
            if event.get("operator_id"):
                self._operator(c, str(event["operator_id"]), at)
        # The agent closes every pending approval when it hands over.
        for approval_id, approval in list(c.approvals.items()):
            if approval.requested_at <= at:
                del c.approvals[approval_id]
                c.closed_approvals.add(approval_id)

    def _on_operator_message(self, c: Conversation, event: Event, at: datetime) -> None:
        action = c.actions.requested(event, str(event.get("text") or ""))
        event_id = str(event.id)
        c.lines = deque(line for line in c.lines if line.cause != event_id)
        if action.taken:
            self._took_message(c, action)

    def _on_handoff_released(self, c: Conversation, event: Event, at: datetime) -> None:
        c.actions.requested(event, str(event.get("note") or ""))

    def _on_operator_action_handled(self, c: Conversation, event: Event, at: datetime) -> None:
        action = c.actions.handled(event)
        if action is None:
            return
        if action.status == IGNORED:
            self._notice(c, "ignored", action)
        elif action.status != ACCEPTED:
            return  # refused after it was answered (a redrive refused again)
        elif action.kind == "handoff_released":
            if c.released_at is None or at > c.released_at:
                c.released_at = at
        elif action.kind == "operator_message" and action.taken:
            self._took_message(c, action)

    def _took_message(self, c: Conversation, action: OperatorAction) -> None:
        """The agent took an operator's message: it is the conversation's now."""
        assert action.at is not None
        self._operator(c, action.operator, action.at)  # the agent's handoff says since when
        self._line(c, Line(action.at, "operator", action.operator, action.detail, action.action_id))

    @staticmethod
    def _operator(c: Conversation, operator: str, at: datetime) -> None:
        """``operator`` has the conversation since ``at``, unless someone has it since later."""
        if c.operator_at is None or at >= c.operator_at:
            c.operator, c.operator_at = operator, at

    def _on_approval_requested(self, c: Conversation, event: Event, at: datetime) -> None:
        approval_id = str(event["approval_id"])
        if approval_id in c.closed_approvals:
            return
        c.approvals[approval_id] = Approval(
            approval_id,
            c.conversation_id,
            event.metadata.tenant_id,
            str(event["tool"]),
            str(event["arguments_json"]),
            str(event.get("reason") or ""),
            at,
            event["expires_at"],
        )

    def _on_approval_decided(self, c: Conversation, event: Event, at: datetime) -> None:
        self._close(c, str(event["approval_id"]))
        words = {"approved": "approved", "denied": "denied"}.get(str(event.get("decision")), "")
        if event.get("arguments_json"):
            words = "approved with edited arguments"
        c.actions.requested(event, words)

    def _on_timer_fired(self, c: Conversation, event: Event, at: datetime) -> None:
        try:
            payload: Any = json.loads(event.get("payload_json") or "{}")
        except ValueError:
            return
        if isinstance(payload, dict) and payload.get("approval_id"):
            self._close(c, str(payload["approval_id"]))

    def _close(self, c: Conversation, approval_id: str) -> None:
        c.approvals.pop(approval_id, None)
        c.closed_approvals.add(approval_id)
