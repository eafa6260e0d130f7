"""Counting tokens without a tokenizer: a documented estimate that errs on the high side.

The agent keeps a request within the model's context (``llm.context_tokens`` less
``llm.answer_reserve_tokens``), so it must count tokens before it asks. Tokenizers count
exactly for one family of models only, and the well-kept ones need data that is not in
their package: ``tiktoken`` downloads its BPE files at first use, which a service must
never do at run time (nor can it, behind an egress policy); packages that bundle the
files are young and refuse long inputs. So the agent estimates, the way OpenAI's own
guidance does ("a token is about four characters, or three quarters of a word, of
English text"), taking the larger of the two and counting each character outside ASCII
as a token of its own (Chinese, Japanese, emoji take a token or more each):

    tokens(text) = max(ceil(ascii_chars / 4) + other_chars, ceil(words * 4 / 3))

plus :data:`MESSAGE_OVERHEAD` per chat message (its role and separators). For English
prose this is within a few percent above what cl100k and o200k count, and above them for
code and most other languages, so a budget kept by the estimate is kept by the model.
A caller with a real tokenizer passes its own :data:`TokenCounter`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable

from pipeline.llm.base import ChatMessage, ToolSpec

TokenCounter = Callable[[str], int]
"""Tokens of a text, as some model's tokenizer (or the estimate) counts them."""

MESSAGE_OVERHEAD = 4
"""Tokens each chat message costs besides its text (role, separators)."""


def estimate_tokens(text: str) -> int:
    """The estimate above: never less than what common tokenizers count for English."""
    if not text:
        return 0
    ascii_chars = len(text.encode("ascii", "ignore"))
    other = len(text) - ascii_chars
    words = len(text.split())
    return max(math.ceil(ascii_chars / 4) + other, math.ceil(words * 4 / 3))


def message_tokens(message: ChatMessage, count: TokenCounter = estimate_tokens) -> int:
    """Tokens of one chat message: its text, its tool calls' names and arguments."""
    tokens = MESSAGE_OVERHEAD + count(message.content or "")
    for call in message.tool_calls:
        tokens += count(call.name) + count(json.dumps(dict(call.arguments))) + MESSAGE_OVERHEAD
    return tokens


def tools_tokens(tools: Iterable[ToolSpec], count: TokenCounter = estimate_tokens) -> int:
    """Tokens the offered tools take in the request (their names, descriptions and
    JSON schemas)."""
    return sum(
        count(t.name) + count(t.description) + count(json.dumps(dict(t.parameters))) for t in tools
    )


def cut_to_tokens(text: str, limit: int, count: TokenCounter = estimate_tokens) -> str:
    """The longest start of ``text`` of at most ``limit`` tokens (the whole when it fits)."""
    if count(text) <= limit:
        return text
    low, high = 0, min(len(text), max(1, limit) * 8)
    while low < high:  # the longest prefix that fits
        middle = (low + high + 1) // 2
        if count(text[:middle]) <= limit:
            low = middle
        else:
            high = middle - 1
    return text[:low]
