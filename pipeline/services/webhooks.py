"""The webhooks service: webhook_received -> the first matching rule -> context_updated.

Rules come from the YAML file in ``PIPELINE_WEBHOOKS__RULES_FILE`` (see
:mod:`pipeline.webhooks.rules`), read once at start: a bad file stops the service at
start with the reason. A webhook no rule matches is counted and produces nothing. The
context_updated goes to the webhook's conversation, or to the one the rule names, and
carries the rule's facts and, if it has one, the proactive message the agent sends.
"""

from __future__ import annotations

import json
import logging

from prometheus_client import Counter

from pipeline.config import Settings
from pipeline.events.model import Event
from pipeline.runtime.context import Context
from pipeline.runtime.service import Service
from pipeline.webhooks.rules import RuleSet, TemplateError

log = logging.getLogger(__name__)

MAX_SOURCE_LABELS = 50


def build(settings: Settings | None = None, *, rules: RuleSet | None = None) -> Service:
    """The ``webhooks`` service; ``rules`` replaces the rules file of the settings."""
    service = Service("webhooks", settings=settings, emits=["context_updated"])
    if rules is None:
        path = service.settings.webhooks.rules_file
        if path is None:
            log.warning("no webhook rules file (PIPELINE_WEBHOOKS__RULES_FILE): nothing matches")
            rules = RuleSet([])
        else:
            rules = RuleSet.load(path)
    ruleset = rules
    log.info("%d webhook rules loaded", len(ruleset))
    outcomes = Counter(
        "pipeline_webhook_events_total",
        "Webhook events by source and outcome (matched, unmatched, invalid).",
        ["service", "source", "outcome"],
        registry=service.registry,
    )
    # Sources are bounded by the gateway's configured secrets; a cap keeps the label
    # bounded even if something else writes webhook_received.
    labels: set[str] = {r.source for r in ruleset.rules if r.source != "*"}

    def source_label(source: str) -> str:
        if source not in labels and len(labels) < MAX_SOURCE_LABELS:
            labels.add(source)
        return source if source in labels else "other"

    @service.handler("webhook_received")
    async def apply_rules(event: Event, ctx: Context) -> None:
        source, name = str(event["source"]), str(event["event_name"])
        label = source_label(source)
        try:
            payload = json.loads(event["payload_json"] or "null")
        except ValueError:
            log.warning("webhook %s/%s has a payload that is not JSON", source, name)
            outcomes.labels(service.name, label, "invalid").inc()
            return
        for rule in ruleset.rules:
            if not rule.matches(source, name, payload):
                continue
            try:
                outcome = rule.apply(payload)
            except TemplateError as exc:
                log.warning("rule %s does not apply to %s/%s: %s", rule.label, source, name, exc)
                continue
            ctx.emit(
                "context_updated",
                {
                    "source": source,
                    "facts": outcome.facts,
                    "proactive_message": outcome.proactive_message,
                },
                conversation_id=outcome.conversation_id or None,
            )
            outcomes.labels(service.name, label, "matched").inc()
            return
        outcomes.labels(service.name, label, "unmatched").inc()

    return service
