"""The scheduler's settings."""

from __future__ import annotations

from pydantic import Field

from pipeline.config.sections._base import _Section


class SchedulerSettings(_Section):
    tick_seconds: float = Field(0.2, gt=0, description="How often due timers are checked.")
    restore_timeout_seconds: float = Field(
        60.0, gt=0, description="Deadline to read the timers topic on assignment."
    )
