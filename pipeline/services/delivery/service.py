"""The delivery service: response_ready -> the channel's API, and delivery_status.

One handler sends each response, retrying inside the handler: the runtime runs other
conversations meanwhile (each conversation is its own lane), and only the handler knows
what the channel answered (Retry-After, which statuses are worth a retry). Each attempt
that will be retried is reported at once (a ``retrying`` status); the final ``sent`` or
``failed`` status goes out with the handler's outputs. A failed send is dead-lettered.
A waiting handler holds one of the runtime's in-flight slots; if its partition is
revoked meanwhile, it hands the response back to the next owner instead of sending.

Not sending twice rests on delivery's journal (:mod:`.sent_records`, a
:mod:`pipeline.journal` on a compacted topic restored on assignment): each attempt is
recorded, and acknowledged, once its turn to send has come and before it goes out; the
channel's answer (``sent``, ``refused``, ``failed``) as soon as it comes. Both are
written at once, awaited, through the runtime's durable publisher, not with the outputs:
in exactly-once mode outside the transaction, so what was sent is known after a crash in
both modes alike. A response handled again after a crash, an aborted transaction, a
restart or a rebalance is skipped when it was sent; one with an attempt and no answer is
uncertain, and resolved as its channel allows (:mod:`.uncertain`): web sends again with
the same ``Idempotency-Key`` (the response event id; the e-mail Message-ID likewise),
Slack looks for the response id in the message metadata first, WhatsApp and e-mail
follow their guarantee setting.

With ``delivery.slack_preview_interval_seconds`` set, Slack answers are also shown while
they are written (``response_delta``; :mod:`.slack_previews`): the answer is then the last
update of the preview's message, sent, recorded and resolved like any other.

This module holds the handler and its hooks. The channels' adapters, and the one place a
response is sent, are in :mod:`.senders`; the journal of sends in :mod:`.sent_records` (its
states in delivery's words in :mod:`.sent_store`); the ``delivery_status`` events in
:mod:`.statuses`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import NoReturn

from pipeline.channels.outbound import PermanentFailure, Retryable, Sender, Sent
from pipeline.channels.slack.outbound import SlackSender
from pipeline.channels.web.stream_log import STREAM_EVENT
from pipeline.config import Settings
from pipeline.errors import RejectEvent
from pipeline.events.model import Event
from pipeline.journal import Step
from pipeline.retry import RetryPolicy
from pipeline.runtime.context import Context
from pipeline.runtime.publisher import Publisher
from pipeline.runtime.service import Service
from pipeline.services.delivery.metrics import DeliveryMetrics
from pipeline.services.delivery.senders import ChannelSenders, default_senders, http_client
from pipeline.services.delivery.sent_records import SentRecords
from pipeline.services.delivery.sent_store import (
    FAILED,
    REFUSED,
    SENT,
    UNCONFIRMED,
    entry_of,
)
from pipeline.services.delivery.slack_previews import SlackPreviews
from pipeline.services.delivery.statuses import STATUS, Statuses, status_data
from pipeline.services.delivery.uncertain import (
    Found,
    Resend,
    Unconfirmed,
    guarantee_of,
    resolve,
)

DELTA = "response_delta"

# default_senders and http_client lived here before senders.py; callers import them here.
__all__ = ["PRODUCER_DEFAULTS", "Delivery", "build", "default_senders", "http_client"]

log = logging.getLogger("pipeline.delivery")

# Each send waits for two records' acknowledgements in a row (the attempt, the answer):
# a record sent at once instead of after linger.ms (5 ms) saves that wait twice per send
# when traffic is light, and under load records still share the requests that go out
# while earlier ones are in flight.
PRODUCER_DEFAULTS = {"linger.ms": 0}


def build(
    settings: Settings | None = None, *, senders: Mapping[str, Sender] | None = None
) -> Service:
    """The delivery service (``pipeline run delivery``).

    ``senders`` (channel -> adapter) replaces the built-in adapters, for tests and for
    channels of your own.
    """
    service = Service(
        "delivery",
        settings=settings,
        emits=[STATUS, STREAM_EVENT],
        producer_defaults=PRODUCER_DEFAULTS,
    )
    # The outcome of each send is logged here and published as a delivery_status; httpx's
    # own line per request would repeat it hundreds of times a second under load.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    delivery = Delivery(service, senders)
    service.handler("response_ready", name="on_response_ready")(delivery.on_response_ready)
    if delivery.previews is not None:
        service.handler(DELTA, name="on_response_delta")(delivery.previews.on_delta)
    service.on_assign(delivery.restore)
    service.on_revoke(delivery.forget)
    service.background(delivery.attach)
    return service


class Delivery:
    """The handler and hooks of the delivery service, and what they share."""

    def __init__(self, service: Service, senders: Mapping[str, Sender] | None = None) -> None:
        self.settings = service.settings
        self.section = service.settings.delivery
        self.name = service.name
        self.registry = service.registry
        self.policy = RetryPolicy(
            max_attempts=self.section.max_attempts,
            initial_seconds=self.section.backoff_initial_seconds,
            max_seconds=self.section.backoff_max_seconds,
            retry_after_max_seconds=self.section.retry_after_max_seconds,
        )
        self.metrics = DeliveryMetrics(service.registry, service.name)
        # The runtime's publisher (see attach), for what cannot wait for the outputs.
        self.publisher: Publisher | None = None
        self.sent = SentRecords(service)
        self.store = self.sent  # where each response stands, per owned partition
        self.senders = ChannelSenders(self.settings, self.metrics, lambda: self.publisher, senders)
        self.statuses = Statuses(self.name, lambda: self.publisher)
        interval = self.section.slack_preview_interval_seconds
        self.previews = (
            None
            if interval is None
            else SlackPreviews(
                self.sent, lambda: self.senders.get("slack"), interval, self.registry, self.name
            )
        )

    @property
    def owned(self) -> set[int] | None:
        """Partitions this instance owns; None until the runtime assigns any (in tests)."""
        return self.sent.owned

    @owned.setter
    def owned(self, partitions: set[int] | None) -> None:
        self.sent.owned = partitions

    # ------------------------------------------------------------------ handler

    async def on_response_ready(self, event: Event, ctx: Context) -> None:
        """Send one response, retrying with backoff; report each attempt's outcome.

        Each attempt is recorded in the journal (acknowledged) before it goes out and
        its answer as soon as it comes; an attempt without a recorded answer is resolved
        as its channel allows (:mod:`pipeline.services.delivery.uncertain`).
        """
        channel = str(event["reply_to"]["channel"])
        response_id = str(event.id)
        step = self.sent.find(ctx)
        known = None if step is None else entry_of(step)
        if known is not None and known.state in (SENT, UNCONFIRMED):
            # Handled again after a crash or rebalance: report it as before, do not send.
            # Emitted first, like the original, so the status has the same event id.
            self.metrics.count(channel, "duplicate")
            self.sent.count("reused")
            log.info("response %s was already handled (%s); not again", response_id, known.state)
            self.statuses.emit(
                ctx,
                event,
                known.state,
                known.attempt,
                provider_id=known.provider_message_id,
                error=known.error,
            )
            return
        sender = self.senders.get(channel)
        if sender is None:
            self._fail(ctx, event, 1, f"no outbound adapter for channel {channel!r}", None)
        if self.previews is not None and isinstance(sender, SlackSender):
            # The answer replaces the preview's message: its last update.
            message = await self.previews.take_over(ctx, event)
            if message is not None:
                sender = self.previews.final_sender(sender, message)

        # An answered attempt (refused) counts on; a failed response starts afresh (a
        # dead letter redriven).
        attempt = 0 if known is None or known.state == FAILED else known.attempt
        uncertain = step if known is not None and known.uncertain else None
        repeating = False  # sending again what may have arrived
        guarantee = guarantee_of(self.section, channel)
        while True:
            attempt += 1
            outcome: Retryable | PermanentFailure
            if uncertain is not None:
                self.metrics.count(channel, "uncertain")
                resolution = await resolve(
                    sender, event, uncertain.attempt, uncertain.at_ms, guarantee
                )
                if isinstance(resolution, Found):
                    log.info("response %s was found in %s: not sent again", event.id, channel)
                    await self._sent(ctx, event, uncertain, resolution.outcome)
                    return
                if isinstance(resolution, Unconfirmed):
                    await self._unconfirmed(ctx, event, uncertain, resolution.reason)
                    return
                if isinstance(resolution, Resend):
                    log.info("response %s: %s", event.id, resolution.reason)
                    uncertain, repeating = None, True
                else:
                    # The lookup failed; the attempt stays uncertain (also for a redrive).
                    outcome = resolution
            if uncertain is None:
                recorded: list[Step] = []
                answer = await self.senders.send(
                    channel, sender, event, attempt, partial(self._attempt, ctx, attempt, recorded)
                )
                [attempted] = recorded
                self.sent.count("repeated" if repeating else "called")
                repeating = False
                if isinstance(answer, Sent):
                    await self._sent(ctx, event, attempted, answer)
                    return
                outcome = answer
                if isinstance(outcome, Retryable) and outcome.uncertain:
                    uncertain = attempted
                else:
                    # The channel answered: the attempt did not arrive.
                    state = FAILED if isinstance(outcome, PermanentFailure) else REFUSED
                    await self.sent.answered(ctx, attempted, state, error=outcome.error)
            if isinstance(outcome, PermanentFailure):
                self._fail(ctx, event, attempt, outcome.error, outcome.http_status)
            if self.policy.exhausted(attempt):
                self._fail(
                    ctx,
                    event,
                    attempt,
                    f"gave up after {attempt} attempts: {outcome.error}",
                    outcome.http_status,
                )
            await self._retry_later(ctx, event, attempt, outcome)
            if not self.sent.owns(ctx.partition):
                # Revoked while waiting (the drain deadline passed): the next owner
                # handles the response from the committed offset; sending here too
                # would race it.
                log.info("partition %d revoked; response %s handed back", ctx.partition, event.id)
                return

    async def _attempt(self, ctx: Context, attempt: int, recorded: list[Step]) -> None:
        """Record attempt ``attempt`` (acknowledged) before it goes out."""
        recorded.append(await self.sent.attempt(ctx, attempt))

    async def _sent(self, ctx: Context, event: Event, step: Step, outcome: Sent) -> None:
        channel = str(event["reply_to"]["channel"])
        self.metrics.count(channel, "sent")
        ingress_at = event.get("ingress_at")
        if isinstance(ingress_at, datetime):
            latency = max(0.0, (datetime.now(UTC) - ingress_at).total_seconds())
            self.metrics.observe_turn(channel, latency)
        # The status first, as a repeat emits it (the same event id), then the answer.
        self.statuses.emit(
            ctx,
            event,
            "sent",
            step.attempt,
            http_status=outcome.http_status,
            provider_id=outcome.provider_message_id,
        )
        await self.sent.answered(ctx, step, SENT, provider_id=outcome.provider_message_id)

    async def _unconfirmed(self, ctx: Context, event: Event, step: Step, reason: str) -> None:
        """At-most-once: the uncertain attempt is not repeated, and the status says so."""
        await self.sent.unconfirmed(ctx, step, reason)
        self.sent.count("unknown")
        self.metrics.count(str(event["reply_to"]["channel"]), UNCONFIRMED)
        log.warning("response %s %s", event.id, reason)
        self.statuses.emit(ctx, event, UNCONFIRMED, step.attempt, error=reason)

    def _fail(
        self, ctx: Context, event: Event, attempt: int, error: str, http_status: int | None
    ) -> NoReturn:
        """Report the failure, then dead-letter the response (the status still goes out)."""
        self.metrics.count(str(event["reply_to"]["channel"]), "failed")
        self.statuses.emit(ctx, event, "failed", attempt, http_status=http_status, error=error)
        raise RejectEvent(f"delivery of response {event.id} failed: {error}", stage="delivery")

    async def _retry_later(
        self, ctx: Context, event: Event, attempt: int, outcome: Retryable
    ) -> None:
        delay = self.policy.delay(attempt, outcome.retry_after)
        next_at = datetime.now(UTC) + timedelta(seconds=delay)
        self.metrics.count(str(event["reply_to"]["channel"]), "retrying")
        data = status_data(
            event,
            "retrying",
            attempt,
            http_status=outcome.http_status,
            error=outcome.error,
            next_attempt_at=next_at,
        )
        log.info(
            "response %s attempt %d failed (%s); next attempt in %.2fs",
            event.id,
            attempt,
            outcome.error,
            delay,
        )
        await self.statuses.publish_now(ctx, event, data, attempt)
        await asyncio.sleep(max(0.0, (next_at - datetime.now(UTC)).total_seconds()))

    # ------------------------------------------------------------------ hooks

    async def attach(self, publisher: Publisher) -> None:
        """Background task: keep the runtime's publisher for ``retrying`` statuses."""
        self.publisher = publisher
        await asyncio.Event().wait()

    async def restore(self, partitions: list[tuple[str, int]]) -> None:
        """Take the assigned partitions (the journal restores what was sent for them
        before any of their responses is handled)."""
        await self.sent.restore(partitions)

    async def forget(self, partitions: list[tuple[str, int]]) -> None:
        """Drop revoked partitions; with none left, release the HTTP clients."""
        self.sent.forget(partitions)
        if not self.sent.owned:
            await self.senders.close()
