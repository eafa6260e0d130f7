"""Keeping a turn's request within the model's context: a token budget per model.

The model reads the system prompt (with the facts, a handoff's note and the summary), the
offered tools, the history and the turn's tool calls and results, and must still have
room for its answer: ``llm.context_tokens`` less ``llm.answer_reserve_tokens``. Before a
turn asks the model, :meth:`ContextBudget.fit` checks the history against what is left;
when it does not fit, its oldest messages are folded into the conversation's summary
(:mod:`.summary`), never silently dropped, until the rest fits with the summary at its
full size (``agent.summary_max_tokens``). The newest message always stays. The fold is
written to the conversation's state, and the handler reports it as a
``history_summarized`` event (visible in the timeline).

A tool result larger than ``agent.tool_result_max_tokens`` is cut before the model ever
reads it, with a note saying how large it was (:func:`bounded_result`).

Tokens are counted with :func:`pipeline.llm.tokens.estimate_tokens` unless a counter is
given.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pipeline.config.sections import AgentSettings, LLMSettings
from pipeline.llm.base import ChatMessage, ChatRequest, ToolSpec
from pipeline.llm.tokens import (
    MESSAGE_OVERHEAD,
    TokenCounter,
    cut_to_tokens,
    estimate_tokens,
    message_tokens,
    tools_tokens,
)
from pipeline.services.agent import summary as summaries
from pipeline.services.agent.conversation import Conversation, Turn

SUMMARIZED = "history_summarized"


@dataclass(frozen=True, slots=True)
class Fold:
    """What one fit moved from the history into the summary."""

    messages: int
    tokens: int
    budget: int
    summary: str

    def event(self) -> dict[str, object]:
        """The ``history_summarized`` event's fields."""
        return {
            "summary": self.summary,
            "folded_messages": self.messages,
            "folded_tokens": self.tokens,
            "budget_tokens": self.budget,
        }


class ContextBudget:
    """The token budget of one model's requests."""

    def __init__(
        self, llm: LLMSettings, agent: AgentSettings, count: TokenCounter = estimate_tokens
    ) -> None:
        self.total = max(0, llm.context_tokens - llm.answer_reserve_tokens)
        self.summary_tokens = agent.summary_max_tokens
        self.count = count

    def fit(
        self,
        conversation: Conversation,
        turn: Turn | None,
        system: str,
        tools: Sequence[ToolSpec],
    ) -> Fold | None:
        """Fold the oldest messages of ``conversation``'s history into its summary until
        the request of ``turn`` fits; what was folded, or None when it fitted already."""
        count = self.count
        fixed = count(system) + MESSAGE_OVERHEAD + tools_tokens(tools, count)
        if turn is not None:
            fixed += sum(message_tokens(s.message(), count) for s in turn.steps)
        sizes = [
            message_tokens(ChatMessage("user", str(h.get("text") or "")), count)
            for h in conversation.history
        ]
        summary = count(conversation.summary or "")
        if fixed + summary + sum(sizes) <= self.total:
            return None
        budget = max(0, self.total - fixed - self.summary_tokens)
        keep, kept = len(sizes), 0
        while keep > 0 and kept + sizes[keep - 1] <= budget:
            kept += sizes[keep - 1]
            keep -= 1
        folding = max(0, min(keep, len(sizes) - 1))  # the newest message always stays
        if folding == 0:
            # Only the summary is over: bring it back to its size.
            trimmed = summaries.trim(
                summaries.lines_of(conversation.summary), self.summary_tokens, count
            )
            if trimmed == (conversation.summary or ""):
                return None
            conversation.summary = trimmed or None
            return Fold(0, 0, budget, trimmed)
        folded = conversation.fold(folding, self.summary_tokens)
        return Fold(len(folded), sum(sizes[:folding]), budget, conversation.summary or "")

    def request_tokens(self, request: ChatRequest) -> int:
        """Tokens of ``request`` as this budget counts them (system, tools, messages)."""
        count = self.count
        facts = "".join(f"- {k}: {v}\n" for k, v in request.facts.items())
        return (
            count(request.system)
            + count(facts)
            + MESSAGE_OVERHEAD
            + tools_tokens(request.tools, count)
            + sum(message_tokens(m, count) for m in request.messages)
        )


def bounded_result(content: str, max_tokens: int, count: TokenCounter = estimate_tokens) -> str:
    """A tool's result as the model reads it: whole, or cut to ``max_tokens`` with a note
    saying how much there was."""
    if count(content) <= max_tokens:
        return content
    note = (
        f"\n[The tool's result was cut: it had {len(content):,} characters (about "
        f"{count(content):,} tokens); only the first {max_tokens:,} tokens are shown.]"
    )
    return cut_to_tokens(content, max(1, max_tokens - count(note)), count) + note
