"""Per-partition state stores backed by compacted changelog topics."""

from __future__ import annotations

from pipeline.state.changelog import (
    StateError,
    StateNotReadyError,
    StateRestoreError,
    read_changelog,
)
from pipeline.state.store import ChangelogStore, decode_value, encode_value

__all__ = [
    "ChangelogStore",
    "StateError",
    "StateNotReadyError",
    "StateRestoreError",
    "decode_value",
    "encode_value",
    "read_changelog",
]
