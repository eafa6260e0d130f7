"""Comparing a replay's outputs with the recorded ones, input by input.

Outputs are matched by causation: the recorded events input X caused against the events
the replayed X caused. Within one input they are put in the order the handler emitted
them, which their ids tell (an emitted id is derived from the cause's id and the
emission's index, :meth:`~pipeline.events.model.Metadata.caused_derived`), and each is
rendered as readable lines: its type, then its fields. Two versions behave the same on an
input when the rendered outputs are equal; otherwise the change is a unified diff.

Not compared: metadata (ids, occurred-at, trace), the agent's version label
(``agent_version``: the version replayed is another by design) and time fields. A replay
runs now, so a time the handler reads from the clock (a follow-up's due time) always
differs.
"""

from __future__ import annotations

import difflib
import json
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pipeline.events.jsonable import jsonable
from pipeline.events.model import AGENT_VERSION, Event, derived_id

__all__ = [
    "ConversationDiff",
    "InputDiff",
    "compare",
    "emission_index",
    "render",
    "summarise",
]

TIME = "<time>"
MAX_EMISSIONS = 256  # emissions of one handler attempt searched for an output's index


def emission_index(event: Event) -> int:
    """Which emission of its handler attempt ``event`` was (0 first); ``MAX_EMISSIONS``
    when its id is not derived from its cause (an event not emitted through a context)."""
    cause = event.metadata.causation_id
    if cause is not None:
        wanted, producer = event.metadata.event_id_text, event.metadata.producer
        for index in range(MAX_EMISSIONS):
            if derived_id(str(cause), f"{producer}/{index}") == wanted:
                return index
    return MAX_EMISSIONS


def in_emission_order(events: Iterable[Event]) -> list[Event]:
    """``events`` without repeats (same id), in the order their handler emitted them."""
    unique = {e.metadata.event_id_text: e for e in events}
    return sorted(unique.values(), key=lambda e: (emission_index(e), e.metadata.occurred_millis))


def render(event: Event) -> list[str]:
    """The event as lines a reader compares: its type, then each field, sorted."""
    lines = [event.type]
    for name in sorted(event.data):
        if name == AGENT_VERSION:
            continue
        lines.append(f"  {name}: {_value(event.data[name])}")
    return lines


def _value(value: Any) -> str:
    if isinstance(value, datetime):
        return TIME
    return json.dumps(jsonable(value), sort_keys=True, ensure_ascii=False)


@dataclass(frozen=True, slots=True)
class InputDiff:
    """What one replayed input caused, against what it caused when recorded."""

    input: Event
    recorded: tuple[Event, ...]
    replayed: tuple[Event, ...]

    @property
    def changed(self) -> bool:
        return _lines(self.recorded) != _lines(self.replayed)

    def kinds(self) -> list[str]:
        """How the outputs differ, one label each: ``response_ready.text`` for a changed
        field, ``+tool_called`` for an output only the replay has, ``-response_ready`` for
        one it no longer emits."""
        labels: list[str] = []
        old, new = list(self.recorded), list(self.replayed)
        for index in range(max(len(old), len(new))):
            before = old[index] if index < len(old) else None
            after = new[index] if index < len(new) else None
            if before is None and after is not None:
                labels.append(f"+{after.type}")
            elif after is None and before is not None:
                labels.append(f"-{before.type}")
            elif before is not None and after is not None:
                if before.type != after.type:
                    labels += [f"-{before.type}", f"+{after.type}"]
                    continue
                fields = sorted((set(before.data) | set(after.data)) - {AGENT_VERSION})
                labels += [
                    f"{before.type}.{name}"
                    for name in fields
                    if _value(before.data.get(name)) != _value(after.data.get(name))
                ]
        return labels

    def title(self) -> str:
        meta = self.input.metadata
        detail = self.input.get("text") or self.input.get("tool") or ""
        text = " ".join(str(detail).split())[:60]
        return f"{meta.event_type} {meta.event_id_text[:8]} {json.dumps(text)}".rstrip()

    def unified(self, new_label: str = "replayed") -> str:
        """The change as a unified diff of the rendered outputs."""
        return "\n".join(
            difflib.unified_diff(
                _lines(self.recorded),
                _lines(self.replayed),
                fromfile=f"recorded: outputs of {self.title()}",
                tofile=f"{new_label}: outputs of the same input",
                lineterm="",
                n=20,
            )
        )


def _lines(events: Sequence[Event]) -> list[str]:
    return [line for event in events for line in render(event)]


@dataclass(slots=True)
class ConversationDiff:
    """One conversation's replay: every input's comparison, and what the replay refused."""

    conversation_id: str
    inputs: list[InputDiff] = field(default_factory=list)
    dead_letters: list[str] = field(default_factory=list)  # the replay's, with reasons

    @property
    def changed(self) -> bool:
        return bool(self.dead_letters) or any(d.changed for d in self.inputs)

    def changes(self) -> list[InputDiff]:
        return [d for d in self.inputs if d.changed]

    def kinds(self) -> Counter[str]:
        counts: Counter[str] = Counter(k for d in self.changes() for k in d.kinds())
        if self.dead_letters:
            counts["dead_letter"] += len(self.dead_letters)
        return counts

    def report(self, new_label: str = "replayed") -> str:
        """The readable account: one line when nothing changed, else a diff per input."""
        recorded = sum(len(d.recorded) for d in self.inputs)
        replayed = sum(len(d.replayed) for d in self.inputs)
        head = (
            f"conversation {self.conversation_id}: {len(self.inputs)} input(s) replayed, "
            f"{recorded} output(s) recorded, {replayed} replayed"
        )
        if not self.changed:
            return f"{head}: no difference"
        parts = [f"{head}: {len(self.changes())} input(s) changed"]
        for diff in self.changes():
            parts.append(f"\n{diff.title()}: {', '.join(diff.kinds())}")
            parts.append(diff.unified(new_label))
        for reason in self.dead_letters:
            parts.append(f"\nthe replay dead-lettered an input: {reason}")
        return "\n".join(parts)


def compare(
    conversation_id: str,
    inputs: Sequence[Event],
    recorded: Iterable[Event],
    replayed: Iterable[Event],
    dead_letters: Iterable[str] = (),
) -> ConversationDiff:
    """Match outputs to ``inputs`` by causation id and compare them input by input."""
    by_cause: dict[str, tuple[list[Event], list[Event]]] = {
        e.metadata.event_id_text: ([], []) for e in inputs
    }
    for side, events in ((0, recorded), (1, replayed)):
        for event in events:
            cause = event.metadata.causation_id
            found = by_cause.get(str(cause)) if cause is not None else None
            if found is not None:
                found[side].append(event)
    result = ConversationDiff(conversation_id, dead_letters=list(dead_letters))
    for event in inputs:
        old, new = by_cause[event.metadata.event_id_text]
        result.inputs.append(
            InputDiff(event, tuple(in_emission_order(old)), tuple(in_emission_order(new)))
        )
    return result


def summarise(diffs: Sequence[ConversationDiff]) -> str:
    """How many conversations changed, and how, over a sample."""
    changed = [d for d in diffs if d.changed]
    lines = [
        f"{len(diffs)} conversation(s) replayed: {len(changed)} changed, "
        f"{len(diffs) - len(changed)} unchanged"
    ]
    kinds: Counter[str] = Counter()
    for diff in changed:
        kinds.update(diff.kinds())
    for kind, count in sorted(kinds.items(), key=lambda kc: (-kc[1], kc[0])):
        lines.append(f"  {count:>4}  {kind}")
    return "\n".join(lines)
