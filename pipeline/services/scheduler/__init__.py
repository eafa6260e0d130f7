"""The scheduler service: durable, cancellable timers fired onto the conversation.

``pipeline run scheduler`` runs :func:`build` (:mod:`.service`). The records of the
compacted timers topic and the in-memory index of an instance's timers are in
:mod:`.timers`; restoring them from the topic on assignment in :mod:`.restore`.
"""

from __future__ import annotations

from pipeline.services.scheduler.restore import read_timers
from pipeline.services.scheduler.service import build
from pipeline.services.scheduler.timers import Change, Ended, Timer, TimerIndex, fired_event_id

__all__ = ["Change", "Ended", "Timer", "TimerIndex", "build", "fired_event_id", "read_timers"]
