"""Per-partition state stores backed by compacted changelog topics."""

from __future__ import annotations

from pipeline.errors import StateError, StateNotReadyError, StateRestoreError
from pipeline.state.changelog import read_changelog
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
