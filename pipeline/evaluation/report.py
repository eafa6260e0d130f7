"""The evaluation's results on disk: one JSON line per conversation as it is evaluated,
then the JSON report machines read (``report.schema.json`` beside this module describes
it) and, from the same lines, the HTML report (:mod:`.html_report`).

The report is written from the lines file, one conversation at a time, so neither the
results nor the report are ever held whole. A report may be compared with an earlier
one of the same set (``--compare-with``): which conversations changed or failed a check
now and did not then, and the other way round.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self

from pipeline.errors import EvaluationError
from pipeline.evaluation.outcome import ConversationResult
from pipeline.evaluation.summary import Totals

FORMAT = "pipeline-evaluation/1"
SCHEMA = Path(__file__).with_name("report.schema.json")


@dataclass(slots=True)
class Previous:
    """What an earlier report said of each conversation, and how this run differs."""

    path: Path
    summary: dict[str, Any]
    changed: dict[str, bool]
    failing: dict[str, list[str]]
    now_changed: list[str] = field(default_factory=list)
    no_longer_changed: list[str] = field(default_factory=list)
    newly_failing: list[str] = field(default_factory=list)
    no_longer_failing: list[str] = field(default_factory=list)

    @classmethod
    def load(cls, path: Path) -> Previous:
        try:
            report = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise EvaluationError(f"cannot read the earlier report {path}: {exc}") from exc
        if not isinstance(report, dict) or report.get("format") != FORMAT:
            raise EvaluationError(f"{path} is not an evaluation report ({FORMAT})")
        conversations = report.get("conversations") or []
        return cls(
            path,
            dict(report.get("summary") or {}),
            {c["conversation_id"]: bool(c["changed"]) for c in conversations},
            {
                c["conversation_id"]: [k["name"] for k in c["checks"] if k["outcome"] != "passed"]
                for c in conversations
            },
        )

    def note(self, result: ConversationResult) -> dict[str, Any] | None:
        """What the earlier run said of ``result``'s conversation; tallies the moves."""
        cid = result.conversation_id
        if cid not in self.changed:
            return None
        was_changed, was_failing = self.changed[cid], self.failing.get(cid, [])
        failing = [c.name for c in result.failed_checks]
        if result.changed and not was_changed:
            self.now_changed.append(cid)
        elif was_changed and not result.changed:
            self.no_longer_changed.append(cid)
        if failing and not was_failing:
            self.newly_failing.append(cid)
        elif was_failing and not failing:
            self.no_longer_failing.append(cid)
        return {"changed": was_changed, "failed_checks": was_failing}

    def as_json(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "summary": {
                k: self.summary.get(k)
                for k in ("conversations", "changed_conversations", "conversations_failing_checks")
            },
            "now_changed": self.now_changed,
            "no_longer_changed": self.no_longer_changed,
            "newly_failing": self.newly_failing,
            "no_longer_failing": self.no_longer_failing,
        }


class ResultLog:
    """The results as JSON lines in a temporary file, added up as they come."""

    def __init__(self, previous: Previous | None = None) -> None:
        self.totals = Totals()
        self.previous = previous
        self._file: IO[str] = tempfile.TemporaryFile("w+", encoding="utf-8")  # noqa: SIM115

    def add(self, result: ConversationResult) -> None:
        self.totals.add(result)
        shown = result.as_json()
        if self.previous is not None:
            shown["previous"] = self.previous.note(result)
        self._file.write(json.dumps(shown, ensure_ascii=False) + "\n")

    def conversations(self) -> Iterator[dict[str, Any]]:
        """The results written so far, read back one at a time, in the order they came."""
        self._file.flush()
        self._file.seek(0)
        for line in self._file:
            yield json.loads(line)
        self._file.seek(0, 2)

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def header(
    *,
    candidate: dict[str, Any],
    baseline: dict[str, Any] | None,
    answers: str,
    recorded_set: dict[str, Any],
    log: ResultLog,
    verdict: dict[str, Any],
) -> dict[str, Any]:
    """Everything of the report but its conversations."""
    return {
        "format": FORMAT,
        "created_at": datetime.now(UTC).isoformat(),
        "candidate": candidate,
        "baseline": baseline,
        "answers": answers,
        "recorded_set": recorded_set,
        "summary": log.totals.as_json(),
        "verdict": verdict,
        "previous": log.previous.as_json() if log.previous is not None else None,
    }


def write_json(path: Path, head: dict[str, Any], log: ResultLog) -> None:
    """The JSON report: ``head``, then the conversations, written one at a time."""
    opening = json.dumps(head, ensure_ascii=False, indent=1)
    with path.open("w", encoding="utf-8") as out:
        out.write(opening[:-2].rstrip() + ',\n "conversations": [\n')
        for index, conversation in enumerate(log.conversations()):
            out.write(("," if index else "") + json.dumps(conversation, ensure_ascii=False))
            out.write("\n")
        out.write("]}\n")
