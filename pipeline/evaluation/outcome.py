"""One evaluated conversation: what production answered against what the candidate
answers, counted the ways a reviewer asks about a change.

The comparison itself is replay's (:func:`pipeline.replay.diff.compare`: outputs matched to
their input by causation, metadata, times and the agent's version label left out); on top
of it, per input:

- an *answer* is the ``response_ready`` texts an input caused: changed or unchanged;
- *tool calls* (``tool_called``) are paired by tool: a call only the candidate makes is
  added, one it no longer makes removed, a pair whose arguments differ changed;
- a *handoff* (``handoff_requested``) the candidate asks for and production did not is
  new, the other way round lost; *approvals* (``approval_requested``) likewise;
- the replay's dead letters (an input its handlers gave up on).

Checks receive a :class:`ConversationResult`; its ``answers``, ``user_messages`` and
``tool_calls`` are the candidate's, its ``recorded_*`` production's.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from prometheus_client import CollectorRegistry

from pipeline.evaluation.recorded_set import RecordedConversation
from pipeline.events.model import Event
from pipeline.replay.diff import ConversationDiff, InputDiff, render

TOKENS_METRIC = "pipeline_agent_llm_tokens_total"  # the agent's, by tenant and kind


@dataclass(slots=True)
class Counts:
    """What changed in one conversation, or, added up, in a whole evaluation."""

    inputs: int = 0
    changed_inputs: int = 0
    answers: int = 0
    changed_answers: int = 0
    recorded_tool_calls: int = 0
    replayed_tool_calls: int = 0
    added_tool_calls: int = 0
    removed_tool_calls: int = 0
    changed_tool_arguments: int = 0
    recorded_handoffs: int = 0
    replayed_handoffs: int = 0
    new_handoffs: int = 0
    lost_handoffs: int = 0
    recorded_approvals: int = 0
    replayed_approvals: int = 0
    new_approvals: int = 0
    lost_approvals: int = 0
    dead_letters: int = 0

    def add(self, other: Counts) -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    def as_json(self) -> dict[str, int]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class Usage:
    """A replay's model usage: tokens, and their cost when the model has a price."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "cost": self.cost,
        }


def tokens_of(registry: CollectorRegistry) -> tuple[int, int]:
    """(prompt, completion) tokens the agent counted on ``registry``."""
    prompt = completion = 0.0
    for metric in registry.collect():
        for sample in metric.samples:
            if sample.name == TOKENS_METRIC:
                if sample.labels.get("kind") == "prompt":
                    prompt += sample.value
                elif sample.labels.get("kind") == "completion":
                    completion += sample.value
    return int(prompt), int(completion)


@dataclass(frozen=True, slots=True)
class CheckResult:
    """One check on one conversation: ``passed``, ``failed`` (with why) or ``error`` (the
    check itself raised)."""

    name: str
    outcome: str
    message: str = ""
    graded: bool = False

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "outcome": self.outcome,
            "message": self.message,
            "graded": self.graded,
        }


@dataclass(slots=True)
class ConversationResult:
    """A conversation as production handled it and as the candidate (and the baseline,
    when one is replayed too) handles it again."""

    conversation: RecordedConversation
    diff: ConversationDiff
    candidate_seconds: list[float] = field(default_factory=list)
    candidate_usage: Usage = field(default_factory=Usage)
    baseline_seconds: list[float] | None = None
    baseline_usage: Usage | None = None
    complete: bool = True
    checks: list[CheckResult] = field(default_factory=list)
    counts: Counts = field(default_factory=Counts)

    def __post_init__(self) -> None:
        self.counts = count(self.diff)

    # ---------------------------------------------------------------- what checks read

    @property
    def conversation_id(self) -> str:
        return self.conversation.conversation_id

    @property
    def tenant(self) -> str:
        return self.conversation.tenant

    @property
    def channel(self) -> str:
        return self.conversation.channel

    @property
    def inputs(self) -> tuple[Event, ...]:
        """The recorded events replayed, in order."""
        return tuple(d.input for d in self.diff.inputs)

    @property
    def recorded(self) -> tuple[Event, ...]:
        """What production emitted in answer to them."""
        return tuple(e for d in self.diff.inputs for e in d.recorded)

    @property
    def replayed(self) -> tuple[Event, ...]:
        """What the candidate emitted in answer to them."""
        return tuple(e for d in self.diff.inputs for e in d.replayed)

    @property
    def user_messages(self) -> list[str]:
        return [str(e.get("text") or "") for e in self.inputs if e.type == "message_received"]

    @property
    def answers(self) -> list[str]:
        """The texts the candidate would send the user."""
        return _texts(self.replayed)

    @property
    def recorded_answers(self) -> list[str]:
        """The texts production sent the user."""
        return _texts(self.recorded)

    @property
    def tool_calls(self) -> list[tuple[str, dict[str, Any]]]:
        """(tool, arguments) of every call the candidate makes, approvals asked included."""
        return _calls(self.replayed)

    @property
    def recorded_tool_calls(self) -> list[tuple[str, dict[str, Any]]]:
        return _calls(self.recorded)

    @property
    def handoffs(self) -> list[Event]:
        return [e for e in self.replayed if e.type == "handoff_requested"]

    # ---------------------------------------------------------------- verdicts

    @property
    def changed(self) -> bool:
        return self.diff.changed

    @property
    def failed_checks(self) -> list[CheckResult]:
        return [c for c in self.checks if c.outcome != "passed"]

    def turn_seconds(self) -> dict[str, list[float]]:
        """Per user turn (an input message and what its chain caused): production's time
        from the message to its first answer, and each replay's time handling the chain."""
        turns = {str(e.id): e for e in self.inputs if e.type == "message_received"}
        recorded: list[float] = []
        for turn_id, message in turns.items():
            answers = [
                e
                for e in self.recorded
                if e.type == "response_ready" and str(e.metadata.correlation_id) == turn_id
            ]
            if answers:
                first = min(a.metadata.occurred_millis for a in answers)
                recorded.append(max(0.0, (first - message.metadata.occurred_millis) / 1000))
        shown = {"recorded": recorded, "candidate": self._per_turn(self.candidate_seconds, turns)}
        if self.baseline_seconds is not None:
            shown["baseline"] = self._per_turn(self.baseline_seconds, turns)
        return shown

    def _per_turn(self, seconds: Sequence[float], turns: dict[str, Event]) -> list[float]:
        totals: dict[str, float] = {}
        for event, took in zip(self.inputs, seconds, strict=False):
            turn = str(event.metadata.correlation_id)
            if turn in turns:
                totals[turn] = totals.get(turn, 0.0) + took
        return list(totals.values())

    def as_json(self) -> dict[str, Any]:
        """Everything a report shows of the conversation."""
        return {
            "conversation_id": self.conversation_id,
            "tenant": self.tenant,
            "channel": self.channel,
            "partition": self.conversation.partition,
            "complete": self.complete,
            "changed": self.changed,
            "counts": self.counts.as_json(),
            "kinds": dict(sorted(self.diff.kinds().items())),
            "changes": [_change(d) for d in self.diff.changes()],
            "dead_letters": list(self.diff.dead_letters),
            "usage": {
                "candidate": self.candidate_usage.as_json(),
                "baseline": self.baseline_usage.as_json() if self.baseline_usage else None,
            },
            "turn_seconds": {k: [round(s, 6) for s in v] for k, v in self.turn_seconds().items()},
            "checks": [c.as_json() for c in self.checks],
        }


def _texts(events: Iterable[Event]) -> list[str]:
    return [str(e.get("text") or "") for e in events if e.type == "response_ready"]


def _calls(events: Iterable[Event]) -> list[tuple[str, dict[str, Any]]]:
    return [
        (str(e["tool"]), _arguments(e))
        for e in events
        if e.type in ("tool_called", "approval_requested")
    ]


def _arguments(event: Event) -> dict[str, Any]:
    try:
        value = json.loads(event.get("arguments_json") or "{}")
    except ValueError:
        return {"<not JSON>": event.get("arguments_json")}
    return value if isinstance(value, dict) else {"<not an object>": value}


def _change(diff: InputDiff) -> dict[str, Any]:
    return {
        "input": diff.title(),
        "input_type": diff.input.type,
        "input_text": str(diff.input.get("text") or ""),
        "kinds": diff.kinds(),
        "recorded": [line for e in diff.recorded for line in render(e)],
        "replayed": [line for e in diff.replayed for line in render(e)],
    }


def count(diff: ConversationDiff) -> Counts:
    """What changed, input by input."""
    counts = Counts(inputs=len(diff.inputs), dead_letters=len(diff.dead_letters))
    for item in diff.inputs:
        counts.changed_inputs += item.changed
        old, new = _texts(item.recorded), _texts(item.replayed)
        if old or new:
            counts.answers += 1
            counts.changed_answers += old != new
        added, removed, changed = _pair_calls(
            [e for e in item.recorded if e.type == "tool_called"],
            [e for e in item.replayed if e.type == "tool_called"],
        )
        counts.recorded_tool_calls += sum(e.type == "tool_called" for e in item.recorded)
        counts.replayed_tool_calls += sum(e.type == "tool_called" for e in item.replayed)
        counts.added_tool_calls += added
        counts.removed_tool_calls += removed
        counts.changed_tool_arguments += changed
        for kind, new_name, lost_name in (
            ("handoff_requested", "new_handoffs", "lost_handoffs"),
            ("approval_requested", "new_approvals", "lost_approvals"),
        ):
            before = sum(e.type == kind for e in item.recorded)
            after = sum(e.type == kind for e in item.replayed)
            plural = new_name.split("_", 1)[1]
            setattr(counts, f"recorded_{plural}", getattr(counts, f"recorded_{plural}") + before)
            setattr(counts, f"replayed_{plural}", getattr(counts, f"replayed_{plural}") + after)
            setattr(counts, new_name, getattr(counts, new_name) + max(0, after - before))
            setattr(counts, lost_name, getattr(counts, lost_name) + max(0, before - after))
    return counts


def _pair_calls(old: list[Event], new: list[Event]) -> tuple[int, int, int]:
    """(added, removed, arguments changed): calls paired by tool, equal arguments first."""
    added = removed = changed = 0
    tools = {str(e["tool"]) for e in (*old, *new)}
    for tool in sorted(tools):
        before = Counter(_canonical(e) for e in old if e["tool"] == tool)
        after = Counter(_canonical(e) for e in new if e["tool"] == tool)
        left = sum((before - after).values())
        right = sum((after - before).values())
        changed += min(left, right)
        added += max(0, right - left)
        removed += max(0, left - right)
    return added, removed, changed


def _canonical(event: Event) -> str:
    return json.dumps(_arguments(event), sort_keys=True)
