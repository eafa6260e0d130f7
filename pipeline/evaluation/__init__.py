"""Judging an agent version on recorded conversations before it ships.

``pipeline evaluate`` chooses recorded conversations (:mod:`.selection`, saved as a
:class:`~pipeline.evaluation.recorded_set.RecordedSet`), reads them back one at a time
(:mod:`.reader`), replays each through the candidate (:mod:`.candidate`; replay's engine,
in memory) several at once (:mod:`.runner`), compares what it does with what production
did (:mod:`.outcome`), runs the team's checks (:mod:`.checks`), adds everything up
against the thresholds (:mod:`.summary`) and writes the reports (:mod:`.report`,
:mod:`.html_report` with :mod:`.charts`).
"""

from __future__ import annotations

from pipeline.evaluation.candidate import Candidate, parse_overrides
from pipeline.evaluation.checks import Check, GradedCheck, load_checks, load_graded
from pipeline.evaluation.outcome import CheckResult, ConversationResult, Counts, Usage
from pipeline.evaluation.recorded_set import RecordedConversation, RecordedSet
from pipeline.evaluation.runner import Evaluation, evaluate
from pipeline.evaluation.selection import Selection, select
from pipeline.evaluation.summary import Threshold, Totals, Verdict, verdict

__all__ = [
    "Candidate",
    "Check",
    "CheckResult",
    "ConversationResult",
    "Counts",
    "Evaluation",
    "GradedCheck",
    "RecordedConversation",
    "RecordedSet",
    "Selection",
    "Threshold",
    "Totals",
    "Usage",
    "Verdict",
    "evaluate",
    "load_checks",
    "load_graded",
    "parse_overrides",
    "select",
    "verdict",
]
