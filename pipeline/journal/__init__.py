"""A journal of outside calls: each model completion or tool execution recorded before it
is made and after it answered, so handling an event again reuses what was recorded
instead of calling again (:class:`Journal`, :class:`Step`)."""

from pipeline.journal.journal import Journal
from pipeline.journal.steps import (
    DECIDED,
    DONE,
    INTENT,
    UNKNOWN,
    Step,
    StepState,
    step_id,
)

__all__ = ["DECIDED", "DONE", "INTENT", "UNKNOWN", "Journal", "Step", "StepState", "step_id"]
