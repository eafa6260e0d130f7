"""The agent's metrics: turns, tool calls, ignored events, handoffs and approvals.

Open handoffs and pending approvals are gauges over the conversations this instance
owns: :class:`OpenWork` keeps a running tally per conversation, updated on every state
write and recounted from the store when partitions are assigned or revoked (always on
the event loop; the metrics endpoint's thread only reads the gauges).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from pipeline.cleanup import HANDOFF_REQUESTERS
from pipeline.config import Settings
from pipeline.services.agent.cleanup import CleanupMetrics

TURN_OUTCOMES = ("answered", "too_deep", "llm_failed", "handed_off")
IGNORED_REASONS = (
    "unknown_call",
    "stale_timer",
    "no_address",
    "other_timer",
    "handed_off",
    "not_handed_off",
    "unknown_approval",
    "late_decision",
)
APPROVAL_DECISIONS = ("approved", "denied", "expired")
# Operators answer in seconds to hours.
FIRST_REPLY_BUCKETS = (5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 14400)


class AgentMetrics:
    def __init__(
        self, registry: CollectorRegistry, service: str, settings: Settings | None = None
    ) -> None:
        # Human cleanup per tenant and agent version.
        self.cleanup = CleanupMetrics(registry, service, settings or Settings())
        self.tenant_tokens = Counter(
            "pipeline_agent_llm_tokens_total",
            "Tokens the model reported for the agent's turns, by tenant and kind (prompt or "
            "completion); a completion reused from the journal costs none.",
            ["service", "tenant", "kind"],
            registry=registry,
        )
        turns = Counter(
            "pipeline_agent_turns_total",
            "Turns the agent finished, by outcome (answered, too_deep, llm_failed, handed_off).",
            ["service", "outcome"],
            registry=registry,
        )
        self.turns = {o: turns.labels(service, o) for o in TURN_OUTCOMES}
        self.tool_calls = Counter(
            "pipeline_agent_tool_calls_total",
            "Tool calls the agent asked for, by tool.",
            ["service", "tool"],
            registry=registry,
        )
        ignored = Counter(
            "pipeline_agent_ignored_events_total",
            "Events the agent had nothing to do for, by reason.",
            ["service", "reason"],
            registry=registry,
        )
        self.ignored = {r: ignored.labels(service, r) for r in IGNORED_REASONS}
        self.refused_tenant = Counter(
            "pipeline_agent_tenant_mismatch_total",
            "Events dead-lettered because their tenant is not the conversation's.",
            ["service"],
            registry=registry,
        ).labels(service)
        handoffs = Counter(
            "pipeline_handoffs_total",
            "Conversations handed to a person, by who or what asked.",
            ["service", "requested_by"],
            registry=registry,
        )
        self.handoffs = {r: handoffs.labels(service, r) for r in HANDOFF_REQUESTERS}
        self.handoffs_open = Gauge(
            "pipeline_handoffs_open",
            "Conversations a person has now (handed off, not released).",
            ["service"],
            registry=registry,
        ).labels(service)
        self.first_reply = Histogram(
            "pipeline_handoff_first_reply_seconds",
            "From a handoff's start to the first operator message in it.",
            ["service"],
            buckets=FIRST_REPLY_BUCKETS,
            registry=registry,
        ).labels(service)
        self.approvals_pending = Gauge(
            "pipeline_approvals_pending",
            "Tool calls waiting for an operator's approval.",
            ["service"],
            registry=registry,
        ).labels(service)
        approvals = Counter(
            "pipeline_approvals_total",
            "Approvals closed, by decision (approved, denied, expired).",
            ["service", "decision"],
            registry=registry,
        )
        self.approvals = {d: approvals.labels(service, d) for d in APPROVAL_DECISIONS}
        self.service = service


class OpenWork:
    """Open handoffs and pending approvals of the owned conversations, as gauges."""

    def __init__(self, metrics: AgentMetrics) -> None:
        self.metrics = metrics
        self._tally: dict[str, tuple[int, int]] = {}  # conversation -> (handed off, approvals)
        self._open = 0
        self._pending = 0

    def track(self, conversation_id: str, state: Mapping[str, Any] | None) -> None:
        """Count ``conversation_id``'s state as it is now written."""
        old = self._tally.pop(conversation_id, (0, 0))
        new = _open_work(state)
        if new != (0, 0):
            self._tally[conversation_id] = new
        self._open += new[0] - old[0]
        self._pending += new[1] - old[1]
        self._publish()

    def recount(self, states: Iterable[tuple[str, Mapping[str, Any] | None]]) -> None:
        """Start over from every owned conversation (after a rebalance)."""
        self._tally = {}
        for key, state in states:
            work = _open_work(state)
            if work != (0, 0):
                self._tally[key] = work
        self._open = sum(h for h, _ in self._tally.values())
        self._pending = sum(a for _, a in self._tally.values())
        self._publish()

    def _publish(self) -> None:
        self.metrics.handoffs_open.set(self._open)
        self.metrics.approvals_pending.set(self._pending)


def _open_work(state: Mapping[str, Any] | None) -> tuple[int, int]:
    if not state:
        return 0, 0
    return (1 if state.get("handoff") else 0), len(state.get("approvals") or {})
