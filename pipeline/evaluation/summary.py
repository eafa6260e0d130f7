"""The evaluation in aggregate, the thresholds a CI gate sets on it, and its verdict.

:class:`Totals` adds up the conversations as they are evaluated, keeping counts and the
few numbers per conversation the plots need, never a conversation itself. A threshold is
``METRIC>LIMIT`` (a count) or ``METRIC>LIMIT%`` (a share of the metric's base, e.g. of
the answers for ``changed_answers``); ``>=`` works too. The verdict fails (exit 1) when a
check failed or erred on any conversation, or a threshold is crossed.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from pipeline.errors import EvaluationError
from pipeline.evaluation.outcome import ConversationResult, Counts

# metric -> (what it counts, the count it is a share of)
METRICS: dict[str, tuple[str, str]] = {
    "changed_conversations": ("conversations with any change", "conversations"),
    "changed_inputs": ("inputs whose outputs changed", "inputs"),
    "changed_answers": ("answers whose text changed", "answers"),
    "added_tool_calls": ("tool calls only the candidate makes", "recorded_tool_calls"),
    "removed_tool_calls": ("tool calls the candidate no longer makes", "recorded_tool_calls"),
    "changed_tool_arguments": ("tool calls with other arguments", "recorded_tool_calls"),
    "new_handoffs": ("handoffs that would now happen", "conversations"),
    "lost_handoffs": ("handoffs that would no longer happen", "conversations"),
    "new_approvals": ("approvals that would now be asked", "conversations"),
    "lost_approvals": ("approvals that would no longer be asked", "conversations"),
    "dead_letters": ("inputs the candidate dead-letters", "inputs"),
    "failed_checks": ("conversations failing a check", "conversations"),
}

_THRESHOLD = re.compile(
    r"^\s*(?P<metric>[a-z_]+)\s*(?P<op>>=|>)\s*(?P<limit>\d+(?:\.\d+)?)(?P<pct>%?)\s*$"
)


@dataclass(frozen=True, slots=True)
class Threshold:
    """``metric > limit`` (a count), or ``metric > limit%`` of its base."""

    metric: str
    limit: float
    percent: bool
    inclusive: bool = False

    @property
    def expression(self) -> str:
        op = ">=" if self.inclusive else ">"
        return f"{self.metric}{op}{self.limit:g}{'%' if self.percent else ''}"

    @classmethod
    def parse(cls, text: str) -> Threshold:
        match = _THRESHOLD.match(text)
        if match is None or match["metric"] not in METRICS:
            known = ", ".join(METRICS)
            raise EvaluationError(
                f"threshold {text!r} is not METRIC>LIMIT or METRIC>LIMIT% with a metric of: {known}"
            )
        return cls(match["metric"], float(match["limit"]), bool(match["pct"]), match["op"] == ">=")

    def value(self, totals: Totals) -> float:
        count = totals.metric(self.metric)
        if not self.percent:
            return count
        base = totals.metric(METRICS[self.metric][1])
        return 100.0 * count / base if base else 0.0

    def crossed(self, totals: Totals) -> bool:
        value = self.value(totals)
        return value >= self.limit if self.inclusive else value > self.limit


@dataclass(slots=True)
class Totals:
    """Everything added up over the conversations evaluated so far."""

    conversations: int = 0
    changed_conversations: int = 0
    incomplete_conversations: int = 0
    counts: Counts = field(default_factory=Counts)
    kinds: Counter[str] = field(default_factory=Counter)
    checks: dict[str, Counter[str]] = field(default_factory=dict)
    failing: int = 0  # conversations with a failed or erred check
    # Per conversation, for the plots: (changes, candidate tokens, baseline tokens, costs).
    changes_per_conversation: list[int] = field(default_factory=list)
    candidate_tokens: list[int] = field(default_factory=list)
    baseline_tokens: list[int] = field(default_factory=list)
    candidate_cost: list[float] = field(default_factory=list)
    baseline_cost: list[float] = field(default_factory=list)
    priced: bool = False
    turn_seconds: dict[str, list[float]] = field(default_factory=dict)

    def add(self, result: ConversationResult) -> None:
        self.conversations += 1
        self.changed_conversations += result.changed
        self.incomplete_conversations += not result.complete
        self.counts.add(result.counts)
        kinds = result.diff.kinds()
        self.kinds.update(kinds)
        self.changes_per_conversation.append(sum(kinds.values()))
        for check in result.checks:
            self.checks.setdefault(check.name, Counter())[check.outcome] += 1
        self.failing += bool(result.failed_checks)
        usage = result.candidate_usage
        self.candidate_tokens.append(usage.prompt_tokens + usage.completion_tokens)
        self.candidate_cost.append(usage.cost or 0.0)
        self.priced |= usage.cost is not None
        if result.baseline_usage is not None:
            base = result.baseline_usage
            self.baseline_tokens.append(base.prompt_tokens + base.completion_tokens)
            self.baseline_cost.append(base.cost or 0.0)
            self.priced |= base.cost is not None
        for side, seconds in result.turn_seconds().items():
            self.turn_seconds.setdefault(side, []).extend(seconds)

    def metric(self, name: str) -> float:
        if name == "conversations":
            return self.conversations
        if name == "changed_conversations":
            return self.changed_conversations
        if name == "failed_checks":
            return self.failing
        return float(getattr(self.counts, name))

    def as_json(self) -> dict[str, Any]:
        return {
            "conversations": self.conversations,
            "changed_conversations": self.changed_conversations,
            "unchanged_conversations": self.conversations - self.changed_conversations,
            "incomplete_conversations": self.incomplete_conversations,
            "counts": self.counts.as_json(),
            "kinds": dict(sorted(self.kinds.items(), key=lambda kc: (-kc[1], kc[0]))),
            "checks": {name: dict(c) for name, c in sorted(self.checks.items())},
            "conversations_failing_checks": self.failing,
            "tokens": {
                "candidate": sum(self.candidate_tokens),
                "baseline": sum(self.baseline_tokens) if self.baseline_tokens else None,
            },
            "cost": {
                "candidate": round(sum(self.candidate_cost), 6) if self.priced else None,
                "baseline": round(sum(self.baseline_cost), 6)
                if self.priced and self.baseline_cost
                else None,
            },
            "turn_seconds": {
                side: _quantiles(values) for side, values in sorted(self.turn_seconds.items())
            },
        }


def _quantiles(values: list[float]) -> dict[str, float | int | None]:
    ordered = sorted(values)

    def at(q: float) -> float | None:
        if not ordered:
            return None
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 6)

    return {"turns": len(ordered), "p50": at(0.5), "p95": at(0.95), "max": at(1.0)}


@dataclass(frozen=True, slots=True)
class Verdict:
    """Whether the evaluation passes, and if not, why."""

    exit_code: int
    reasons: tuple[str, ...]
    thresholds: tuple[dict[str, Any], ...]

    def as_json(self) -> dict[str, Any]:
        return {
            "exit_code": self.exit_code,
            "reasons": list(self.reasons),
            "thresholds": list(self.thresholds),
        }


def verdict(totals: Totals, thresholds: list[Threshold]) -> Verdict:
    """Exit 1 when a check failed or erred, or a threshold is crossed; else 0."""
    reasons: list[str] = []
    for name, outcomes in sorted(totals.checks.items()):
        bad = outcomes["failed"] + outcomes["error"]
        if bad:
            reasons.append(f"check {name} failed on {bad} conversation(s)")
    shown: list[dict[str, Any]] = []
    for threshold in thresholds:
        value, crossed = threshold.value(totals), threshold.crossed(totals)
        shown.append(
            {"expression": threshold.expression, "value": round(value, 6), "crossed": crossed}
        )
        if crossed:
            unit = "%" if threshold.percent else ""
            reasons.append(f"threshold {threshold.expression} crossed: {value:g}{unit}")
    return Verdict(1 if reasons else 0, tuple(reasons), tuple(shown))
