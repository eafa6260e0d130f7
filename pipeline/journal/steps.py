"""A journal step: one outside call (a model completion, a tool execution) with an identity.

A step is identified by the event being handled and the call's place in that handling
(:func:`step_id`), so handling the same event again finds the same steps. It is recorded
as an *intent* before the call is made and as *done* (with its result) as soon as the
call answered; an intent without a result means the call may or may not have happened
(*uncertain*). An at-most-once call that was uncertain is recorded as *unknown* and not
made again; an operator's decision about it is recorded as *decided*.

Each step remembers the event it belongs to (its topic, partition and offset): once that
offset is committed the event is never handled again, and the step is no longer needed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal

StepState = Literal["intent", "done", "unknown", "decided"]
INTENT: StepState = "intent"
DONE: StepState = "done"
UNKNOWN: StepState = "unknown"
DECIDED: StepState = "decided"
STATES = (INTENT, DONE, UNKNOWN, DECIDED)

FORMAT_VERSION = 1


def step_id(event_id: object, kind: str, index: int = 0) -> str:
    """The identity of the ``index``-th call of ``kind`` made while handling one event."""
    return f"{event_id}/{kind}/{index}"


@dataclass(frozen=True, slots=True)
class Step:
    """Where one outside call stands.

    ``source`` is (topic, partition, offset) of the event it belongs to; ``attempt``
    counts the times the call was made (an uncertain one made again raises it); ``key`` is
    the idempotency key it was made with; ``result`` the recorded answer (JSON-able);
    ``error`` why it is unknown or failed.
    """

    id: str
    kind: str
    state: StepState
    source: tuple[str, int, int]
    at_ms: int
    attempt: int = 1
    key: str | None = None
    result: Mapping[str, Any] | None = None
    error: str | None = None

    @property
    def uncertain(self) -> bool:
        """The call was made (or about to be) and no answer was recorded."""
        return self.state == INTENT

    def moved(self, state: StepState, at_ms: int, **changes: Any) -> Step:
        return replace(self, state=state, at_ms=at_ms, **changes)

    def to_json(self) -> dict[str, Any]:
        value: dict[str, Any] = {
            "id": self.id,
            "kind": self.kind,
            "state": self.state,
            "src": list(self.source),
            "at": self.at_ms,
            "attempt": self.attempt,
        }
        if self.key is not None:
            value["key"] = self.key
        if self.result is not None:
            value["result"] = dict(self.result)
        if self.error is not None:
            value["error"] = self.error
        return value

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> Step:
        topic, partition, offset = value["src"]
        state = value["state"]
        if state not in STATES:
            raise ValueError(f"unknown journal step state {state!r}")
        return cls(
            id=str(value["id"]),
            kind=str(value["kind"]),
            state=state,
            source=(str(topic), int(partition), int(offset)),
            at_ms=int(value["at"]),
            attempt=int(value.get("attempt", 1)),
            key=value.get("key"),
            result=value.get("result"),
            error=value.get("error"),
        )


def encode_steps(steps: list[Step]) -> dict[str, Any]:
    """A conversation's journal value: ``{"v": 1, "steps": [...]}``, oldest first."""
    return {"v": FORMAT_VERSION, "steps": [s.to_json() for s in steps]}


def decode_steps(value: Mapping[str, Any] | None) -> list[Step]:
    if not value:
        return []
    return [Step.from_json(s) for s in value.get("steps", [])]
