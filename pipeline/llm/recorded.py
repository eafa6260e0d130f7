"""Recorded answers: a provider that answers each model call of a replay with what the
model answered in production, read back from what the agent did then.

A replay with ``--answers recorded`` (``pipeline replay``) runs the agent with
``PIPELINE_LLM__PROVIDER=recorded``: for each recorded input, the answer is rebuilt from
the agent's recorded outputs caused by it (its ``tool_called`` and ``approval_requested``
events are the tool calls the model asked for, a ``handoff_requested`` by the model its
``escalate``, a ``response_ready`` the text). So a change to prompts, rules or tools is
judged on the same model answers, at no model cost and the same every time; with fresh
answers (the default) the configured model is asked again. The journal of model calls
(:mod:`pipeline.journal`) cannot serve a replay: its steps expire once their events are
committed.

The answers of the input being replayed are set on :data:`TAPE` by the replay engine
(one input at a time); a call with no recorded answer fails as a model outage would.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from contextvars import ContextVar
from dataclasses import dataclass, field

from pipeline.errors import LLMError
from pipeline.events.model import Event
from pipeline.llm.base import ChatRequest, Completion, ToolCall

ESCALATE = "escalate"


@dataclass
class RecordedAnswers:
    """The model's recorded answers by the id of the input event they answered."""

    answers: dict[str, Completion] = field(default_factory=dict)
    current: str | None = None  # the input being replayed now

    @classmethod
    def from_outputs(cls, outputs: Iterable[Event]) -> RecordedAnswers:
        """Rebuild each input's answer from the agent's outputs caused by it."""
        calls: dict[str, list[ToolCall]] = {}
        texts: dict[str, str] = {}
        for event in outputs:
            cause = str(event.metadata.causation_id)
            if event.type in ("tool_called", "approval_requested"):
                arguments = json.loads(event["arguments_json"] or "{}")
                call = ToolCall(str(event["call_id"]), str(event["tool"]), arguments)
                calls.setdefault(cause, []).append(call)
            elif event.type == "handoff_requested" and event["requested_by"] == "model":
                escalate = ToolCall(f"{cause}/escalate", ESCALATE, {"reason": event["reason"]})
                calls.setdefault(cause, []).append(escalate)
            elif event.type == "response_ready" and cause not in texts:
                texts[cause] = str(event["text"])
        answers = {
            cause: Completion(text=texts.get(cause), tool_calls=tuple(calls.get(cause, ())))
            for cause in calls.keys() | texts.keys()
        }
        return cls(answers)


TAPE: ContextVar[RecordedAnswers | None] = ContextVar("recorded_answers", default=None)


class RecordedProvider:
    """Answers from :data:`TAPE`: what the model answered when the input was recorded."""

    name = "recorded"
    model = "recorded"
    deterministic = True  # the same answer every time, at no cost: nothing to journal

    async def complete(self, request: ChatRequest) -> Completion:
        tape = TAPE.get()
        if tape is None or tape.current is None:
            raise LLMError("no recorded answers: the recorded provider serves replays only")
        answer = tape.answers.get(tape.current)
        if answer is None:
            raise LLMError(f"the recording has no model answer to input {tape.current}")
        return answer

    async def aclose(self) -> None:
        return None
