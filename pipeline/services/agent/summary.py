"""A conversation's summary: its oldest messages, folded into a few lines the model reads.

When the history no longer fits (the model's context budget, or ``agent.history_window``
messages), the oldest messages leave the history and are folded into the summary rather
than dropped: one line per message, its role and the start of its text, so that what the
user said early on (a name, an order number, a preference) still reaches the model. The
summary is extractive (no model call: it costs nothing, is the same every time, and
needs no journal) and bounded: past ``max_tokens`` the lines in its middle give way (a
``…`` line marks where), so it keeps how the conversation began, in up to a third of its
size, and what was folded last.

The model gets it in its system prompt (:func:`for_model`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from pipeline.llm.tokens import TokenCounter, cut_to_tokens, estimate_tokens

HEADING = "Summary of the earlier conversation (its oldest messages, shortened):"
LINE_SHARE = 8
"""A folded message's line takes at most 1/LINE_SHARE of the summary."""
MIN_LINE_TOKENS = 24
CUT = "…"
GAP = "- …"
"""The line that stands for the lines dropped from the middle."""
HEAD_SHARE = 3
"""The conversation's first lines keep up to 1/HEAD_SHARE of the summary."""


def fold(
    summary: str | None,
    messages: Iterable[Mapping[str, Any]],
    max_tokens: int,
    count: TokenCounter = estimate_tokens,
) -> str:
    """``summary`` with a line for each of ``messages`` (history entries: ``role``,
    ``text``) added, lines from its middle dropped to keep it within ``max_tokens``."""
    lines = lines_of(summary)
    per_line = max(MIN_LINE_TOKENS, max_tokens // LINE_SHARE)
    for message in messages:
        text = " ".join(str(message.get("text") or "").split())
        shortened = cut_to_tokens(text, per_line, count)
        if shortened != text:
            shortened = shortened.rstrip() + CUT
        lines.append(f"- {message.get('role', 'user')}: {shortened}")
    return trim(lines, max_tokens, count)


def trim(lines: list[str], max_tokens: int, count: TokenCounter = estimate_tokens) -> str:
    """The summary of ``lines`` within ``max_tokens``: whole when it fits, else its first
    lines (up to a third) and its last, with :data:`GAP` for those in between."""
    budget = max_tokens - count(HEADING) - 1
    sizes = [count(line) + 1 for line in lines]
    if sum(sizes) <= budget:
        return "\n".join([HEADING, *lines]) if lines else ""
    budget -= count(GAP) + 1
    head, used = 0, 0
    while head < len(lines) and lines[head] != GAP and used + sizes[head] <= budget // HEAD_SHARE:
        used += sizes[head]
        head += 1
    tail = len(lines)
    while tail > head and lines[tail - 1] != GAP and used + sizes[tail - 1] <= budget:
        used += sizes[tail - 1]
        tail -= 1
    return "\n".join([HEADING, *lines[:head], GAP, *lines[tail:]])


def lines_of(summary: str | None) -> list[str]:
    """The folded messages' lines of a summary."""
    if not summary:
        return []
    return [line for line in summary.splitlines() if line and line != HEADING]


def for_model(system: str, summary: str | None) -> str:
    """The system prompt with the summary after it."""
    if not summary:
        return system
    return f"{system}\n\n{summary}".strip()
