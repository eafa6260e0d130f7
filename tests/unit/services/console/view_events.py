"""Events for the console view's unit tests, at times relative to one start."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from pipeline.events.model import Event, Metadata, utc_now
from pipeline.services.console.view import ConsoleView

T0 = utc_now()
ARGUMENTS = '{"order": "1234", "amount": 20}'


def event(
    event_type: str,
    seconds: int,
    conversation: str = "c1",
    cause: Event | None = None,
    *,
    tenant: str = "t1",
    **data: Any,
) -> Event:
    metadata = Metadata(
        uuid.uuid4(),
        event_type,
        conversation,
        tenant,
        uuid.uuid4(),
        cause.id if cause is not None else None,
        T0 + timedelta(seconds=seconds),
        "agent",
    )
    return Event(metadata, data)


def handled(
    seconds: int, request: Event, outcome: str = "accepted", reason: str | None = None
) -> Event:
    """The agent's outcome of an operator's ``request``."""
    return event(
        "operator_action_handled",
        seconds,
        request.conversation_id,
        request,
        tenant=request.metadata.tenant_id,
        action=request.type,
        operator_id=request["operator_id"],
        outcome=outcome,
        reason=reason,
    )


def view_of(events: list[Event]) -> ConsoleView:
    view = ConsoleView(max_conversations=100, max_messages=10)
    view.apply_all(events)
    return view


def called(
    seconds: int, call_id: str = "call-1", conversation: str = "c1", tenant: str = "t1"
) -> Event:
    return event(
        "tool_called",
        seconds,
        conversation,
        tenant=tenant,
        call_id=call_id,
        tool="refund",
        arguments_json=ARGUMENTS,
        timeout_ms=10_000,
        depth=0,
    )


def result(
    seconds: int,
    status: str = "unknown",
    call_id: str = "call-1",
    conversation: str = "c1",
    tenant: str = "t1",
) -> Event:
    return event(
        "tool_result",
        seconds,
        conversation,
        tenant=tenant,
        call_id=call_id,
        tool="refund",
        status=status,
        result_json=None,
        error="outcome unknown: the tools service stopped while the call ran",
        duration_ms=0,
    )


def decided(seconds: int, call_id: str = "call-1", outcome: str = "done") -> Event:
    return event(
        "tool_outcome_decided",
        seconds,
        call_id=call_id,
        tool="refund",
        outcome=outcome,
        operator_id="ada",
        result_json=None,
        note=None,
    )
