"""Tool calls whose outcome is unknown, as the console's view keeps them per conversation.

A tools service that finds a call of an at-most-once tool begun but never finished (it
stopped while the call ran) does not run it again: it answers with a ``tool_result`` whose
status is ``unknown``. Such a call waits here, with the arguments of its ``tool_called``,
until a ``tool_outcome_decided`` for it is read: an operator marked it done or failed
(:meth:`pipeline.services.console.actions.OperatorActions.mark`).

The reader reads several topics at once, so the three events of a call may arrive in any
order: the arguments are filled in whenever the ``tool_called`` is read, and a decision
read before its result closes the call for good (a decided call is never listed again,
so a duplicate decision or a result read twice leaves nothing half-done).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime

from pipeline.events.model import Event

UNKNOWN = "unknown"
RECENT_CALLS = 16
"""How many calls' arguments a conversation keeps, for a result that may still say
unknown."""


@dataclass(slots=True)
class UncertainCall:
    """A tool call that may or may not have taken effect, waiting for an operator."""

    call_id: str
    conversation_id: str
    tenant: str
    tool: str
    error: str
    reported_at: datetime  # when the tool_result said unknown
    result: Event  # that tool_result: the decision names it as its cause
    arguments_json: str | None = None  # from the tool_called, once read
    called_at: datetime | None = None


@dataclass(slots=True)
class UncertainCalls:
    """One conversation's open uncertain calls, the decided ones, and the arguments of
    its recent calls."""

    open: dict[str, UncertainCall] = field(default_factory=dict)
    decided: set[str] = field(default_factory=set)
    recent: OrderedDict[str, tuple[str, datetime]] = field(default_factory=OrderedDict)

    def listed(self) -> list[UncertainCall]:
        """The open calls, the longest waiting first."""
        return sorted(self.open.values(), key=lambda call: call.reported_at)

    def called(self, event: Event, at: datetime) -> None:
        """Fold a ``tool_called``: keep its arguments, or give them to its open call."""
        call_id, arguments = str(event["call_id"]), str(event["arguments_json"])
        found = self.open.get(call_id)
        if found is not None:
            found.arguments_json, found.called_at = arguments, at
            return
        self.recent[call_id] = (arguments, at)
        self.recent.move_to_end(call_id)
        while len(self.recent) > RECENT_CALLS:
            self.recent.popitem(last=False)

    def reported(self, conversation_id: str, event: Event, at: datetime) -> bool:
        """Fold a ``tool_result``; whether it opened an uncertain call."""
        call_id = str(event["call_id"])
        if event["status"] != UNKNOWN or call_id in self.decided or call_id in self.open:
            return False
        arguments, called_at = self.recent.pop(call_id, (None, None))
        self.open[call_id] = UncertainCall(
            call_id,
            conversation_id,
            event.metadata.tenant_id,
            str(event["tool"]),
            str(event.get("error") or "no reason given"),
            at,
            event,
            arguments,
            called_at,
        )
        return True

    def decided_on(self, call_id: str) -> None:
        """Fold a ``tool_outcome_decided``: the call is closed, whenever its result comes."""
        self.open.pop(call_id, None)
        self.decided.add(call_id)
        self.recent.pop(call_id, None)
