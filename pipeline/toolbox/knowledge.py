"""A small local knowledge base: entries with keywords and an answer, matched by words.

The file is YAML or JSON::

    entries:
      - id: opening-hours
        question: When are you open?
        keywords: [hours, open, opening, closed]
        answer: We are open Monday to Friday, 9:00 to 17:00 CET.

A query scores one point per keyword it contains (a keyword may be a phrase) and half a
point per word it shares with the question; the best entry above zero answers.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from pipeline.errors import ConfigError

_WORD = re.compile(r"[a-z0-9]+")
_STOP = frozenset(
    {
        *("a", "an", "and", "are", "can", "do", "does", "for", "how", "i", "is", "it"),
        *("me", "my", "of", "on", "or", "the", "to", "we", "what", "when", "where"),
        *("which", "who", "why", "you", "your"),
    }
)


@dataclass(frozen=True, slots=True)
class Entry:
    id: str
    answer: str
    keywords: tuple[str, ...]
    question_words: frozenset[str]


class KnowledgeBase:
    """Entries loaded once; :meth:`lookup` returns the best entry for a query or None."""

    def __init__(self, entries: list[Entry]) -> None:
        self.entries = entries

    @classmethod
    def load(cls, path: Path) -> KnowledgeBase:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read the knowledge file {path}: {exc}") from exc
        try:
            data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
        except (ValueError, yaml.YAMLError) as exc:
            raise ConfigError(f"the knowledge file {path} is not valid YAML/JSON: {exc}") from exc
        return cls.from_data(data, str(path))

    @classmethod
    def from_data(cls, data: Any, origin: str = "knowledge") -> KnowledgeBase:
        if not isinstance(data, Mapping) or not isinstance(data.get("entries"), list):
            raise ConfigError(f"{origin}: expected a mapping with a list under 'entries'")
        entries = []
        for i, raw in enumerate(data["entries"]):
            where = f"{origin}: entries[{i}]"
            if not isinstance(raw, Mapping):
                raise ConfigError(f"{where} must be a mapping")
            answer = raw.get("answer")
            if not isinstance(answer, str) or not answer.strip():
                raise ConfigError(f"{where} needs a non-empty 'answer'")
            keywords = raw.get("keywords", [])
            if not isinstance(keywords, list) or not all(isinstance(k, str) for k in keywords):
                raise ConfigError(f"{where}: 'keywords' must be a list of strings")
            question = raw.get("question", "")
            if not isinstance(question, str):
                raise ConfigError(f"{where}: 'question' must be a string")
            if not keywords and not question:
                raise ConfigError(f"{where} needs 'keywords' or a 'question' to match on")
            entries.append(
                Entry(
                    id=str(raw.get("id", i)),
                    answer=answer.strip(),
                    keywords=tuple(" ".join(_words(k)) for k in keywords if _words(k)),
                    question_words=frozenset(_words(question)) - _STOP,
                )
            )
        return cls(entries)

    def lookup(self, query: str) -> Entry | None:
        words = _words(query)
        text = f" {' '.join(words)} "
        query_words = frozenset(words) - _STOP
        best: tuple[float, Entry] | None = None
        for entry in self.entries:
            score = sum(1.0 for k in entry.keywords if f" {k} " in text)
            score += 0.5 * len(entry.question_words & query_words)
            if score > 0 and (best is None or score > best[0]):
                best = (score, entry)
        return best[1] if best else None


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower())
