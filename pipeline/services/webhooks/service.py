"""The webhooks service: webhook_received -> the first matching rule -> context_updated.

Rules come from the YAML file in ``PIPELINE_WEBHOOKS__RULES_FILE`` (see
:mod:`pipeline.services.webhooks.rules`), read once at start: a bad file stops the service at
start with the reason. A webhook no rule matches is counted and produces nothing. The
context_updated goes to the webhook's conversation, or to the one the rule names, and
carries the rule's facts and, if it has one, the proactive message the agent sends.

Each delivery is handled once. The gateway derives a webhook's event id from (source,
delivery id), so a replayed, resent or retried delivery has the same id; this service
records the ids it handled per conversation in a compacted topic
(``webhook_deliveries``, co-partitioned with webhook_received, written with the
handler's outputs and restored on assignment), and a repeat is counted as
``duplicate`` and produces nothing, whichever gateway process accepted it and however
many restarts lie between. A rule that renders a conversation in another tenant's
namespace (``web:<other>:...``) is refused: the event is dead-lettered with the reason.
"""

from __future__ import annotations

import json
import logging

from prometheus_client import Counter

from pipeline.channels.tenancy import web_owner
from pipeline.config import Settings
from pipeline.errors import RejectEvent, TemplateError
from pipeline.events.model import Event
from pipeline.runtime.context import Context
from pipeline.runtime.service import Service
from pipeline.services.webhooks.rules import RuleSet
from pipeline.state import ChangelogStore

log = logging.getLogger(__name__)

MAX_SOURCE_LABELS = 50


def build(settings: Settings | None = None, *, rules: RuleSet | None = None) -> Service:
    """The ``webhooks`` service; ``rules`` replaces the rules file of the settings."""
    service, _ = assemble(settings, rules=rules)
    return service


def assemble(
    settings: Settings | None = None, *, rules: RuleSet | None = None
) -> tuple[Service, ChangelogStore]:
    """The ``webhooks`` service and its store of handled deliveries (for tests)."""
    service = Service("webhooks", settings=settings, emits=["context_updated"])
    section = service.settings.webhooks
    deliveries = ChangelogStore(
        service.settings,
        section.deliveries_topic,
        service=service.name,
        registry=service.registry,
        restore_timeout_seconds=section.restore_timeout_seconds,
    )
    deliveries.attach(service)
    keep = section.delivery_ids_per_conversation
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
        "Webhook events by source and outcome (matched, unmatched, invalid, duplicate).",
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
        handled = deliveries.get(ctx, event.conversation_id) or {"v": 1, "ids": []}
        delivery = str(event.id)
        if delivery in handled["ids"]:
            log.info("webhook %s/%s %s was handled before; ignored", source, name, delivery)
            outcomes.labels(service.name, label, "duplicate").inc()
            return
        outcome = match(event, ctx, source, name)
        outcomes.labels(service.name, label, outcome).inc()
        handled["ids"] = [*handled["ids"], delivery][-keep:]
        deliveries.put(ctx, event.conversation_id, handled)

    def match(event: Event, ctx: Context, source: str, name: str) -> str:
        """Emit the first matching rule's context_updated; the outcome's name."""
        try:
            payload = json.loads(event["payload_json"] or "null")
        except ValueError:
            log.warning("webhook %s/%s has a payload that is not JSON", source, name)
            return "invalid"
        for rule in ruleset.rules:
            if not rule.matches(source, name, payload):
                continue
            try:
                outcome = rule.apply(payload)
            except TemplateError as exc:
                log.warning("rule %s does not apply to %s/%s: %s", rule.label, source, name, exc)
                continue
            target = outcome.conversation_id or event.conversation_id
            owner = web_owner(target)
            if owner is not None and owner != event.metadata.tenant_id:
                raise RejectEvent(
                    f"rule {rule.label} addresses conversation {target!r} of tenant {owner!r} "
                    f"for a webhook of tenant {event.metadata.tenant_id!r}; refused"
                )
            ctx.emit(
                "context_updated",
                {
                    "source": source,
                    "facts": outcome.facts,
                    "proactive_message": outcome.proactive_message,
                },
                conversation_id=outcome.conversation_id or None,
            )
            return "matched"
        return "unmatched"

    return service, deliveries
