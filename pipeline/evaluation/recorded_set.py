"""A recorded set: which conversations an evaluation reads, and where, saved as a file.

An evaluation reads each conversation of its set exactly as it was recorded when the set
was made: for every topic, the first and the last offset of the conversation's records in
its partition (all conversation topics share one partition count and key, so one
partition number holds the whole conversation). Saved to a file, the same set is
evaluated again after a change, on the same records, even once the conversations have
gone on, and two runs' reports can be compared conversation by conversation::

    {"format": "pipeline-recorded-set/1", "created_at": "...", "topic_prefix": "...",
     "selection": {"tenants": [...], "channels": [...], "since": ..., "until": ...,
                   "sample": 50, "seed": 0},
     "conversations": [{"conversation_id": "web:acme:u1", "tenant": "acme",
                        "channel": "web", "partition": 3,
                        "offsets": {"message_received": [12, 40], ...}}]}
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pipeline.errors import EvaluationError

FORMAT = "pipeline-recorded-set/1"


@dataclass(frozen=True, slots=True)
class RecordedConversation:
    """One conversation of a set: its partition and, per topic, the offsets of its first
    and last record (both included)."""

    conversation_id: str
    tenant: str
    channel: str
    partition: int
    offsets: Mapping[str, tuple[int, int]]

    def as_json(self) -> dict[str, Any]:
        return {
            "conversation_id": self.conversation_id,
            "tenant": self.tenant,
            "channel": self.channel,
            "partition": self.partition,
            "offsets": {t: [first, last] for t, (first, last) in sorted(self.offsets.items())},
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RecordedConversation:
        offsets = {str(t): (int(r[0]), int(r[1])) for t, r in dict(data["offsets"]).items()}
        return cls(
            str(data["conversation_id"]),
            str(data.get("tenant") or ""),
            str(data.get("channel") or ""),
            int(data["partition"]),
            offsets,
        )


@dataclass(frozen=True, slots=True)
class RecordedSet:
    """The conversations an evaluation reads, and how they were chosen."""

    conversations: tuple[RecordedConversation, ...]
    topic_prefix: str = ""
    selection: Mapping[str, Any] = field(default_factory=dict)
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    def by_partition(self) -> dict[int, list[RecordedConversation]]:
        """The conversations grouped by partition number, in the set's order."""
        grouped: dict[int, list[RecordedConversation]] = {}
        for conversation in self.conversations:
            grouped.setdefault(conversation.partition, []).append(conversation)
        return dict(sorted(grouped.items()))

    def as_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "created_at": self.created_at.isoformat(),
            "topic_prefix": self.topic_prefix,
            "selection": dict(self.selection),
            "conversations": [c.as_json() for c in self.conversations],
        }

    def save(self, path: Path) -> None:
        """Write the set to ``path`` as JSON."""
        path.write_text(json.dumps(self.as_json(), indent=1) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: Path) -> RecordedSet:
        """The set saved at ``path``; EvaluationError saying what is wrong with the file."""
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise EvaluationError(f"cannot read the recorded set {path}: {exc}") from exc
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise EvaluationError(
                f"{path} is not a recorded set ({FORMAT}): save one with "
                "`pipeline evaluate --save-set FILE`"
            )
        try:
            conversations = tuple(RecordedConversation.from_json(c) for c in data["conversations"])
            created = datetime.fromisoformat(str(data["created_at"]))
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise EvaluationError(f"the recorded set {path} is damaged: {exc!r}") from exc
        return cls(conversations, str(data.get("topic_prefix") or ""), data["selection"], created)
