"""Replay recorded conversations through a handler version and diff the outputs.

``pipeline replay CONVERSATION --service my_agent:build`` reads the conversation's events
across topics (:mod:`pipeline.timeline`), feeds the service's recorded inputs through it
in memory (:mod:`pipeline.replay.engine`, on :class:`pipeline.in_memory.InMemoryService`) and
compares the outputs with the recorded ones input by input (:mod:`pipeline.replay.diff`).
"""

from __future__ import annotations

from pipeline.errors import ReplayError
from pipeline.replay.diff import ConversationDiff, InputDiff, compare, render, summarise
from pipeline.replay.engine import Replayed, replay_conversation, run_in_memory
from pipeline.replay.recording import (
    Recording,
    recent_conversations,
    select,
    state_as_of,
)

__all__ = [
    "ConversationDiff",
    "InputDiff",
    "Recording",
    "ReplayError",
    "Replayed",
    "compare",
    "recent_conversations",
    "render",
    "replay_conversation",
    "run_in_memory",
    "select",
    "state_as_of",
    "summarise",
]
