"""Rules that turn webhooks from external systems into conversation events."""

from __future__ import annotations

from pipeline.webhooks.rules import Outcome, Rule, RulesError, RuleSet, TemplateError, render

__all__ = ["Outcome", "Rule", "RuleSet", "RulesError", "TemplateError", "render"]
