"""What the console itself reports, on an injected registry (nothing registers at import).

Open handoffs, time to first operator reply, pending approvals and decisions are the
agent's (it owns the conversation state); the console counts what only it sees:
operator actions, sign-ins, refused requests, live streams, records it could not read.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

ACTIONS = (
    "reply",
    "take",
    "release",
    "approve",
    "deny",
    "edit",
    "mark_done",
    "mark_failed",
    "redrive",
)
REFUSALS = ("unauthenticated", "cross_site", "csrf_token", "invalid", "forbidden")


class ConsoleMetrics:
    def __init__(self, registry: CollectorRegistry, service: str) -> None:
        self.registry = registry
        self.service = service
        self.actions = Counter(
            "pipeline_console_operator_actions_total",
            "Operator actions produced as events, by action (reply, take, release, "
            "approve, deny, edit, mark_done, mark_failed, redrive).",
            ["action"],
            registry=registry,
        )
        self.signins = Counter(
            "pipeline_console_signins_total",
            "Sign-in attempts on the console, by result (success, failure, limited: past "
            "the sign-in rate, no password checked).",
            ["result"],
            registry=registry,
        )
        self.refused = Counter(
            "pipeline_console_refused_requests_total",
            "Requests refused, by reason (unauthenticated, cross_site, csrf_token, invalid, "
            "forbidden: an action the operator's role does not allow).",
            ["reason"],
            registry=registry,
        )
        self.stream_clients = Gauge(
            "pipeline_console_stream_clients",
            "Browsers connected to the live stream (server-sent events).",
            registry=registry,
        )
        # Every series from the start at 0, so rates and alerts see the first one.
        for action in ACTIONS:
            self.actions.labels(action)
        for result in ("success", "failure", "limited"):
            self.signins.labels(result)
        for reason in REFUSALS:
            self.refused.labels(reason)
        self.skipped = Counter(
            "pipeline_console_skipped_records_total",
            "Records the console's reader could not decode and left out of its view.",
            registry=registry,
        )
