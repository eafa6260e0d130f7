"""The webhooks service's settings."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from pipeline.config.sections._base import _Section


class WebhooksSettings(_Section):
    rules_file: Path | None = Field(None, description="YAML rules mapping webhooks to events.")
    deliveries_topic: str = Field(
        "webhook_deliveries",
        description="Compacted topic recording handled webhook deliveries per conversation "
        "(co-partitioned with webhook_received), restored on assignment, so a replayed or "
        "retried delivery is handled once across processes and restarts.",
    )
    delivery_ids_per_conversation: int = Field(
        1000, ge=1, description="Handled webhook delivery ids remembered per conversation."
    )
    restore_timeout_seconds: float = Field(
        60.0, gt=0, description="Deadline to restore the deliveries store on assignment."
    )
