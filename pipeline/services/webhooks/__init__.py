"""The webhooks service: webhooks from external systems become conversation events.

``pipeline run webhooks`` runs :func:`build` (:mod:`.service`); the rules that match a
webhook and say what to emit are in :mod:`.rules`.
"""

from __future__ import annotations

from pipeline.errors import RulesError, TemplateError
from pipeline.services.webhooks.rules import Outcome, Rule, RuleSet, render
from pipeline.services.webhooks.service import assemble, build

__all__ = [
    "Outcome",
    "Rule",
    "RuleSet",
    "RulesError",
    "TemplateError",
    "assemble",
    "build",
    "render",
]
