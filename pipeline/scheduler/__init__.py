"""Durable timers: the records of the compacted timers topic, the in-memory index of an
instance's timers, and restoring them from the topic."""

from __future__ import annotations

from pipeline.scheduler.restore import read_timers
from pipeline.scheduler.timers import Change, Ended, Timer, TimerIndex, fired_event_id

__all__ = ["Change", "Ended", "Timer", "TimerIndex", "fired_event_id", "read_timers"]
