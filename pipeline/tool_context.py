"""What a tool learns about the call it is running for: :class:`ToolContext`.

A tool function asks for it by taking a second positional parameter, or a keyword-only
``context`` parameter; a function of the arguments alone never sees it::

    @tool("refund", "Refund an order.", {"order_id": {"type": "string"}})
    async def refund(arguments, context):
        return await payments.refund(arguments["order_id"], key=context.idempotency_key)

The idempotency key is the ``tool_called`` event's id (:func:`idempotency_key`): the same
every time that event is handled again (after a crash, a rebalance), and different for
every call, so the system a keyed tool calls can recognise a repeat.

It is a module of its own, beside the event model rather than in :mod:`pipeline.toolbox`
(which exports it too), so that the package's facade exports it without loading the
toolbox's HTTP and JSON Schema libraries into every process that imports ``pipeline``.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from pipeline.events.model import Event


def idempotency_key(event: Event) -> str:
    """The idempotency key of the call a ``tool_called`` event asks for: its event id, as
    canonical UUID text.

    The agent derives a tool_called's id from the event it handled, so handling that
    event again asks for the call with the same key, and the tools service handling the
    tool_called again passes the same key. The one place the key is derived.
    """
    return event.metadata.event_id_text


@dataclass(frozen=True, slots=True)
class ToolContext:
    """One call of a tool, as the tool sees it.

    ``call_id`` is the model's id for the call (echoed in the tool_result);
    ``idempotency_key`` is what a keyed tool deduplicates by; ``attempt`` is 1 the first
    time the tools service runs this call, and higher when it runs it again.
    """

    call_id: str
    idempotency_key: str
    tool: str
    conversation_id: str
    tenant_id: str
    attempt: int = 1

    @classmethod
    def for_call(cls, event: Event, *, attempt: int = 1) -> ToolContext:
        """The context of the call a ``tool_called`` event asks for."""
        return cls(
            call_id=str(event["call_id"]),
            idempotency_key=idempotency_key(event),
            tool=str(event["tool"]),
            conversation_id=event.conversation_id,
            tenant_id=event.metadata.tenant_id,
            attempt=attempt,
        )

    @classmethod
    def standalone(cls, tool: str) -> ToolContext:
        """The context of a call made outside the tools service (a test, a script): a new
        call id and key every time, since every such call is a new one; no conversation."""
        key = str(uuid.uuid4())
        return cls(call_id=key, idempotency_key=key, tool=tool, conversation_id="", tenant_id="")
