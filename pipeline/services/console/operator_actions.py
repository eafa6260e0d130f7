"""What became of each operator action, as the console shows it: sent and waiting for
the agent, taken by it, ignored by it (nothing to do, with why), or refused (it was
dead-lettered, with why).

The agent is the single writer of a conversation's state, so an operator's request
(``operator_message``, ``handoff_released``, ``approval_decided``,
``tool_outcome_decided``) changes nothing on its own: the agent answers each with
``operator_action_handled`` (accepted or ignored, caused by the request) or dead-letters
it with the reason (a conversation it does not have, of another tenant). The console
reads all three (the requests, the outcomes, the dead letters) in any order: an
:class:`ActionLog` keeps each action by the request's event id and settles it by the
latest answer (a refused action that an operator redrove and the agent then took is
taken). Taking a conversation (``handoff_requested`` by an operator) is the console's own
record: the agent, already silent, is not asked, so it is recorded at once.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime

from pipeline.events.model import Event

SENT = "sent"
ACCEPTED = "accepted"
IGNORED = "ignored"
REFUSED = "refused"
RECORDED = "recorded"

STATUS_WORDS = {
    SENT: "waiting for the agent",
    ACCEPTED: "taken by the agent",
    IGNORED: "ignored by the agent",
    REFUSED: "refused",
    RECORDED: "recorded",
}

HANDLED_BY_THE_AGENT = (
    "operator_message",
    "handoff_released",
    "approval_decided",
    "tool_outcome_decided",
)
"""The operator events the agent answers (``operator_action_handled``, or a dead letter)."""

TAKE = "handoff_requested"
WORDS = {
    "operator_message": "reply",
    "handoff_released": "release",
    "approval_decided": "approval decision",
    "tool_outcome_decided": "decision on an uncertain action",
    TAKE: "take",
}


@dataclass(slots=True)
class OperatorAction:
    """One operator action and what became of it."""

    action_id: str  # the request's event id
    kind: str  # the request's event type
    conversation_id: str
    tenant: str
    operator: str = ""
    at: datetime | None = None  # when the operator acted; None until the request is read
    detail: str = ""  # what they wrote or decided
    status: str = SENT
    reason: str = ""  # why it was ignored or refused
    answered_at: datetime | None = None  # when the agent took, ignored or refused it

    @property
    def what(self) -> str:
        """``reply by ada``: the action in words."""
        return f"{WORDS.get(self.kind, self.kind)} by {self.operator or 'an operator'}"

    @property
    def status_words(self) -> str:
        return STATUS_WORDS[self.status]

    @property
    def taken(self) -> bool:
        """Accepted by the agent, and the request read (so what it said is known)."""
        return self.status == ACCEPTED and self.at is not None


class ActionLog:
    """A conversation's operator actions by id, the most recent ``limit`` kept."""

    def __init__(self, limit: int = 20) -> None:
        self.limit = limit
        self._actions: OrderedDict[str, OperatorAction] = OrderedDict()

    def __contains__(self, action_id: object) -> bool:
        return action_id in self._actions

    def get(self, action_id: str) -> OperatorAction | None:
        return self._actions.get(action_id)

    def recent(self) -> list[OperatorAction]:
        """The actions, the latest first."""
        return sorted(self._actions.values(), key=_latest, reverse=True)

    def requested(self, event: Event, detail: str) -> OperatorAction:
        """An operator's request was read (a take is recorded at once)."""
        action = self._action(str(event.id), event.type, event)
        action.operator = str(event.get("operator_id") or action.operator)
        action.at = event.metadata.occurred_at
        action.detail = detail
        if event.type == TAKE:
            action.status = RECORDED
        return action

    def handled(self, outcome: Event) -> OperatorAction | None:
        """The agent's outcome of a request (its cause); None when it names none."""
        cause = outcome.metadata.causation_id
        if cause is None:
            return None
        action = self._action(str(cause), str(outcome.get("action") or ""), outcome)
        action.operator = action.operator or str(outcome.get("operator_id") or "")
        at = outcome.metadata.occurred_at
        if action.answered_at is None or at >= action.answered_at:
            accepted = outcome.get("outcome") == ACCEPTED
            action.status = ACCEPTED if accepted else IGNORED
            action.reason = "" if accepted else str(outcome.get("reason") or "")
            action.answered_at = at
        return action

    def refused(self, request: Event, reason: str, at: datetime | None) -> OperatorAction:
        """A request was dead-lettered with ``reason`` (at ``at``)."""
        action = self._action(str(request.id), request.type, request)
        action.operator = action.operator or str(request.get("operator_id") or "")
        if action.answered_at is None or at is None or at >= action.answered_at:
            action.status, action.reason = REFUSED, reason
            action.answered_at = at or action.answered_at
        return action

    def _action(self, action_id: str, kind: str, event: Event) -> OperatorAction:
        found = self._actions.get(action_id)
        if found is None:
            meta = event.metadata
            found = OperatorAction(action_id, kind, meta.conversation_id, meta.tenant_id)
            self._actions[action_id] = found
            while len(self._actions) > self.limit:
                self._actions.popitem(last=False)
        elif kind and not found.kind:
            found.kind = kind
        return found


def _latest(action: OperatorAction) -> datetime:
    moments = [m for m in (action.at, action.answered_at) if m is not None]
    return max(moments) if moments else _EPOCH


_EPOCH = datetime.fromtimestamp(0, UTC)
