"""Reading a streamed chat completion: server-sent chunks assembled into a Completion.

With ``"stream": true`` an OpenAI-compatible server answers ``text/event-stream``: one
``data: {chunk}`` line per chunk, then ``data: [DONE]``. A chunk's first choice carries a
``delta``: a piece of the text (``content``), or pieces of tool calls (``tool_calls``,
each with the ``index`` of the call it belongs to; the call's ``id`` and function name
come in its first piece, its JSON arguments in pieces after). With
``stream_options.include_usage`` a last chunk, with no choices, reports the usage.
:class:`ChunkAssembler` folds the chunks into the :class:`~pipeline.llm.base.Completion`
the non-streamed answer would have been.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pipeline.errors import LLMError
from pipeline.llm.base import Completion, ToolCall, Usage

log = logging.getLogger(__name__)

DONE = "[DONE]"


@dataclass(slots=True)
class _CallParts:
    id: str = ""
    name: str = ""
    arguments: list[str] = field(default_factory=list)


class ChunkAssembler:
    """Folds streamed chunks into one completion; :meth:`add` returns each chunk's text."""

    def __init__(self) -> None:
        self._text: list[str] = []
        self._calls: dict[int, _CallParts] = {}
        self._usage: Usage | None = None
        self.done = False  # [DONE] came
        self.finished = False  # a choice came with its finish_reason
        self.started = False  # any text or tool call has come

    def add_line(self, line: str) -> str:
        """One line of the event stream; the answer's new text ('' for none)."""
        if not line.startswith("data:"):
            return ""  # blank separators, comments (": keep-alive"), event names
        payload = line[5:].strip()
        if payload == DONE:
            self.done = True
            return ""
        if not payload:
            return ""
        try:
            chunk = json.loads(payload)
        except ValueError as exc:
            raise LLMError(f"a stream chunk that is not JSON: {payload[:200]!r}") from exc
        if not isinstance(chunk, dict):
            raise LLMError(f"a stream chunk that is not an object: {payload[:200]!r}")
        return self.add(chunk)

    def add(self, chunk: Mapping[str, Any]) -> str:
        """One decoded chunk; the answer's new text ('' for none)."""
        if chunk.get("error"):
            raise LLMError(f"the server reported an error mid-stream: {chunk['error']}")
        usage = chunk.get("usage")
        if isinstance(usage, Mapping):
            self._usage = Usage(
                int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
            )
        choices = chunk.get("choices") or ()
        if not choices:
            return ""
        if choices[0].get("finish_reason"):
            self.finished = True
        delta = choices[0].get("delta") or {}
        for piece in delta.get("tool_calls") or ():
            self.started = True
            parts = self._calls.setdefault(int(piece.get("index", 0)), _CallParts())
            parts.id = parts.id or str(piece.get("id") or "")
            function = piece.get("function") or {}
            parts.name = parts.name or str(function.get("name") or "")
            if function.get("arguments"):
                parts.arguments.append(str(function["arguments"]))
        text = delta.get("content")
        if not text:
            return ""
        self.started = True
        self._text.append(str(text))
        return str(text)

    def completion(self) -> Completion:
        """The answer the chunks so far make up."""
        calls = tuple(
            ToolCall(
                parts.id or f"call_{index}", parts.name, tool_arguments(parts.name, parts.arguments)
            )
            for index, parts in sorted(self._calls.items())
            if parts.name
        )
        text = "".join(self._text)
        return Completion(
            text=text if text or not calls else None, tool_calls=calls, usage=self._usage
        )


def tool_arguments(name: str, raw: object) -> dict[str, Any]:
    """A tool call's arguments: its JSON text (or its pieces, joined) as an object;
    arguments that are not JSON are kept whole under ``_unparsed``."""
    if isinstance(raw, list):
        raw = "".join(raw)
    raw = raw or "{}"
    try:
        parsed = json.loads(raw) if isinstance(raw, str) else raw
    except ValueError:
        log.warning("tool call %s has arguments that are not JSON: %.200s", name, raw)
        return {"_unparsed": raw}
    return parsed if isinstance(parsed, dict) else {"value": parsed}
