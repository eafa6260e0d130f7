"""The model's and the agent's settings."""

from __future__ import annotations

import functools
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as distribution_version
from typing import Literal

from pydantic import Field, IPvAnyNetwork, SecretStr

from pipeline.config.sections._base import _Section


class ModelPrice(_Section):
    """What a model's tokens cost, per million, in the currency of the bill."""

    prompt: float = Field(ge=0, description="Price of a million prompt (input) tokens.")
    completion: float = Field(ge=0, description="Price of a million completion (output) tokens.")

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        """What that many tokens cost."""
        return (prompt_tokens * self.prompt + completion_tokens * self.completion) / 1e6


class LLMSettings(_Section):
    provider: str = Field(
        "deterministic",
        description="'deterministic', 'openai', or 'recorded' (replays only: the answers the "
        "model gave when the conversation was recorded).",
    )
    base_url: str = Field("https://api.openai.com/v1", description="Chat-completions base URL.")
    allowed_networks: list[IPvAnyNetwork] = Field(
        default_factory=list,
        description="Internal networks base_url may be at (a model served inside the "
        "cluster, e.g. ['10.20.0.0/16']); by default it must be a public address, and only "
        "its origin is ever requested.",
    )
    model: str = Field("gpt-4o-mini", description="Model name.")
    api_key: SecretStr | None = Field(None, description="API key (Bearer).")
    timeout_seconds: float = Field(
        30.0,
        gt=0,
        description="Timeout of one chat-completion request: for its answer, and for a "
        "free connection while max_connections calls are in progress.",
    )
    connect_timeout_seconds: float = Field(
        5.0,
        gt=0,
        description="Timeout of opening a connection to the model (a host that does not "
        "answer fails the attempt, which is retried, instead of holding it timeout_seconds).",
    )
    max_connections: int = Field(
        1000,
        ge=1,
        description="Model calls in progress at once per process, each on a connection of its "
        "own that is kept alive for the next; a model that thinks for 1 s with two calls per "
        "turn needs two per turn per second (600 at 300 turns/s).",
    )
    max_retries: int = Field(
        2,
        ge=0,
        description="Retries of a chat completion on 429, 5xx, timeouts and lost "
        "connections; when they run out the agent answers the user with an apology.",
    )
    temperature: float = Field(
        0.2, ge=0, le=2, description="Sampling temperature sent to the model."
    )
    backoff_initial_seconds: float = Field(
        0.5, gt=0, description="First retry delay after a 429, 5xx or timeout (doubles)."
    )
    backoff_max_seconds: float = Field(8.0, gt=0, description="Longest delay between retries.")
    system_prompt: str = Field(
        "You are a helpful assistant. Use the tools when they help; answer briefly.",
        description="System message sent before the conversation.",
    )
    stream: bool = Field(
        True,
        description='Ask an OpenAI-compatible model to stream its answer ("stream": true), '
        "so the agent can show it while it is written (agent.stream_channels); the "
        "turn's answer is the same either way.",
    )
    deterministic_words_per_second: float | None = Field(
        None,
        gt=0,
        description="Let the deterministic provider stream its answers word by word at "
        "this rate (a stand-in for a model that writes; off if unset).",
    )
    context_tokens: int = Field(
        128_000,
        ge=256,
        description="The model's context window in tokens: the request (system prompt, "
        "tools, history, the turn) and the answer must fit in it.",
    )
    answer_reserve_tokens: int = Field(
        4_096,
        ge=0,
        description="Tokens of the context kept free for the model's answer.",
    )
    prices: dict[str, ModelPrice] = Field(
        default_factory=dict,
        description="What each model's tokens cost, per million, by model name (model -> "
        '{"prompt": 0.15, "completion": 0.6}): `pipeline evaluate` reports each '
        "conversation's cost with them.",
    )


DEFAULT_HANDOFF_PHRASES = (
    "talk to a human",
    "speak to a human",
    "talk to a person",
    "speak to a person",
    "real person",
    "human agent",
    "talk to an agent",
    "speak to an agent",
)


class AgentSettings(_Section):
    version: str | None = Field(
        None,
        min_length=1,
        max_length=64,
        description="The agent's version label: every event the agent emits carries it "
        "(agent_version), and so do its human-cleanup metrics, so timelines, the console, "
        "evaluations and the dashboard tell versions apart (a canary). Default: the "
        "package's version.",
    )
    history_window: int = Field(
        200,
        ge=1,
        description="Messages of history kept whole per conversation; older ones are folded "
        "into the conversation's summary (the model's context budget, llm.context_tokens, "
        "usually folds them first).",
    )
    summary_max_tokens: int = Field(
        1_000,
        ge=50,
        description="Size of a conversation's summary of its folded messages, in tokens; "
        "beyond it the oldest lines of the summary give way.",
    )
    tool_result_max_tokens: int = Field(
        4_000,
        ge=50,
        description="A tool result larger than this is cut to it, with a note saying so, "
        "before the model reads it.",
    )
    stream_channels: list[str] = Field(
        default_factory=lambda: ["web"],
        description="Channels whose answers are previewed while the model writes them "
        "(response_delta events), when the provider streams: 'web' (the chat page's "
        "stream) and 'slack' (with delivery.slack_preview_interval_seconds); [] for none.",
    )
    delta_interval_seconds: float = Field(
        0.1,
        ge=0,
        description="Least time between two deltas of an answer being written (the first "
        "goes at once); the text written meanwhile goes in one delta.",
    )
    delta_max_chars: int = Field(
        400,
        ge=1,
        description="A delta goes before delta_interval_seconds have passed once this many "
        "characters wait.",
    )
    max_tool_depth: int = Field(4, ge=0, description="Tool calls allowed per turn.")
    follow_up_seconds: float | None = Field(
        None, gt=0, description="Schedule a follow-up this long after an answer (off if unset)."
    )
    follow_up_text: str = Field(
        "Is there anything else I can help you with?", description="Text of the follow-up."
    )
    tool_timeout_seconds: float = Field(
        10.0, gt=0, description="Deadline given to each tool call (timeout_ms of tool_called)."
    )
    max_open_turns: int = Field(
        4, ge=1, description="Turns waiting on tools per conversation; the oldest is dropped."
    )
    changelog_topic: str = Field(
        "agent_state_changelog", description="Compacted topic backing the conversation state."
    )
    journal_topic: str = Field(
        "agent_journal",
        description="Compacted topic of the agent's journal of model calls: a completion "
        "recorded there is reused when its event is handled again (after a crash, a "
        "rebalance or an aborted transaction) instead of asking the model again.",
    )
    journal_model_calls: Literal["auto", "always", "never"] = Field(
        "auto",
        description="Record model calls in the journal: 'auto' for every provider but the "
        "deterministic one (whose answers cost nothing and are the same every time).",
    )
    restore_timeout_seconds: float = Field(
        300.0, gt=0, description="Deadline to restore assigned state from the changelog."
    )
    handoff_phrases: dict[str, list[str]] = Field(
        default_factory=lambda: {"*": list(DEFAULT_HANDOFF_PHRASES)},
        description="Phrases by which a user asks for a person, per tenant (tenant -> "
        "phrases; '*' for tenants not listed; [] for none); matched case-insensitively "
        "anywhere in the message.",
    )
    handoff_text: str | None = Field(
        "I am passing you to a person; they will answer you here.",
        description="Sent to the user when a handoff starts (none if unset).",
    )
    escalate_tool: bool = Field(
        True, description="Offer the model an 'escalate' tool that hands the conversation over."
    )
    handoff_fact: str = Field(
        "handoff",
        description="A context_updated fact of this name (a webhook rule's) hands the "
        "conversation over, its value the reason; it is not merged into the facts.",
    )
    handoff_after_failed_turns: int | None = Field(
        3,
        ge=1,
        description="Hand over after this many failed turns in a row (model down, tool "
        "loop too deep); off if unset.",
    )
    approval_tools: dict[str, list[str]] = Field(
        default_factory=dict,
        description="Tools that need an operator's approval before they run, per tenant "
        "(tenant -> tool names; '*' for every tenant).",
    )
    approval_timeout_seconds: float = Field(
        900.0, gt=0, description="An approval not decided this long after it was asked expires."
    )
    approval_waiting_text: str | None = Field(
        "This needs a person's approval first; I will come back to you here.",
        description="Sent to the user when a tool call waits for approval (none if unset).",
    )
    cleanup_window_seconds: float = Field(
        600.0,
        gt=0,
        description="An answer counts as resolved when, this long after it, the conversation "
        "was not handed to a person, no operator replied and the user did not ask the same "
        "again (the first-answer-resolved rate of the human-cleanup metrics).",
    )

    def version_label(self) -> str:
        """:attr:`version`, or the package's version when it is unset."""
        return self.version or package_version()


@functools.cache
def package_version() -> str:
    """The installed package's version (``0+unknown`` when it is not installed)."""
    try:
        return distribution_version("kafka-agent-pipeline")
    except PackageNotFoundError:
        return "0+unknown"
