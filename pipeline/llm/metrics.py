"""LLM metrics, registered on an injected registry (never at import)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

LLM_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120)
# The first token comes in tenths of a second to seconds: finer at the low end.
FIRST_TOKEN_BUCKETS = (0.025, 0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 1, 1.5, 2.5, 5, 10, 30)


class LLMMetrics:
    """Token usage, request latency, request outcomes and streaming times of one
    service's provider."""

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
        self.first_token = Histogram(
            "pipeline_llm_time_to_first_token_seconds",
            "From sending a streamed chat-completions request to the first piece of the "
            "answer (text or a tool call) coming back.",
            ["service", "provider", "model"],
            buckets=FIRST_TOKEN_BUCKETS,
            registry=registry,
        )
        self.stream_duration = Histogram(
            "pipeline_llm_stream_duration_seconds",
            "From sending a streamed chat-completions request to the end of its stream.",
            ["service", "provider", "model"],
            buckets=LLM_BUCKETS,
            registry=registry,
        )
