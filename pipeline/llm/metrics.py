"""LLM metrics, registered on an injected registry (never at import)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

LLM_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120)


class LLMMetrics:
    """Token usage, request latency and request outcomes of one service's provider."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.tokens = Counter(
            "pipeline_llm_tokens_total",
            "Tokens the model reported, by kind (prompt or completion).",
            ["service", "provider", "model", "kind"],
            registry=registry,
        )
        self.duration = Histogram(
            "pipeline_llm_request_duration_seconds",
            "Duration of one chat-completions HTTP request, retries counted separately.",
            ["service", "provider", "model"],
            buckets=LLM_BUCKETS,
            registry=registry,
        )
        self.requests = Counter(
            "pipeline_llm_requests_total",
            "Chat-completions HTTP requests by outcome (ok, retried, failed).",
            ["service", "provider", "model", "outcome"],
            registry=registry,
        )
