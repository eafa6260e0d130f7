"""Slack answers shown while they are written: one message, updated at a bounded rate.

With ``delivery.slack_preview_interval_seconds`` set, delivery reads ``response_delta``
too. For a Slack answer being written it posts the first words once
(``chat.postMessage``), then rewrites that message (``chat.update``) with the text so
far at most once per interval, since Slack rate-limits updates; the final answer is the
last update of the same message, made by the response's ordinary send
(:meth:`SlackPreviews.final_sender`), so it is recorded, looked up and never sent twice
like any other. A stream that ends without an answer has its message deleted.

The preview's message is a step of delivery's journal, ``step_id(stream id, "preview")``:
its intent before the post, its ts after it, and "closed" once the answer took it over
(or arrived first: then no preview is ever posted for that stream, and a late delta is
ignored). So after a restart the answer still updates the preview's message rather than
posting a second one; a post whose answer was not recorded is looked for by its stream
id in the message metadata. What the message shows in between is kept in memory only: a
delivery that restarted mid-answer (or missed a delta) stops updating the preview and
leaves it to the answer.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Counter

from pipeline.channels.outbound import Outcome, PermanentFailure, Retryable, Sender, Sent
from pipeline.channels.slack.outbound import SlackSender
from pipeline.events.model import Event
from pipeline.journal import DONE, INTENT, Step, step_id
from pipeline.runtime.context import Context
from pipeline.services.delivery.sent_records import SentRecords

log = logging.getLogger("pipeline.delivery")

PREVIEW = "preview"  # the journal's kind of step for a previewed message
WRITING = " …"  # shown after the text while it is still being written
STALE_SECONDS = 600.0  # a stream not heard from this long is forgotten
ACTIONS = ("posted", "updated", "deleted", "skipped", "failed")


@dataclass(slots=True)
class _Shown:
    """What the preview message of one stream shows, as far as this process knows."""

    channel: str
    ts: str
    text: str = ""
    next_sequence: int = 1
    updated_at: float = field(default_factory=time.monotonic)
    heard_at: float = field(default_factory=time.monotonic)
    broken: bool = False  # a delta was missed: leave the rest to the answer


class SlackPreviews:
    """The preview messages of Slack answers being written, per stream."""

    def __init__(
        self,
        sent: SentRecords,
        slack: Callable[[], Sender | None],
        interval: float,
        registry: CollectorRegistry,
        service: str,
    ) -> None:
        self.sent = sent
        self._slack = slack  # () -> the Slack adapter, made on first use
        self.interval = interval
        self._shown: dict[str, _Shown] = {}
        counter = Counter(
            "pipeline_delivery_previews_total",
            "Slack preview messages of answers being written, by action: posted, updated, "
            "deleted (the stream ended without an answer), skipped (within the interval, or "
            "after a missed delta) or failed (Slack refused; the answer is sent as usual).",
            ["service", "action"],
            registry=registry,
        )
        self.counts = {a: counter.labels(service, a) for a in ACTIONS}

    # ------------------------------------------------------------------ deltas

    async def on_delta(self, event: Event, ctx: Context) -> None:
        """Show one delta of a Slack answer being written (other channels: nothing)."""
        reply_to = event.get("reply_to")
        if not reply_to or reply_to.get("channel") != "slack":
            return
        slack = self._slack()
        if not isinstance(slack, SlackSender):
            return
        stream = str(event["stream_id"])
        self._forget_stale()
        step = self.sent.journal.find(ctx, preview_step_id(stream))
        if step is not None and _closed(step):
            return  # the answer has the message (or came first)
        shown = self._shown.get(stream)
        if event["interrupted"]:
            await self._end(ctx, stream, step, slack)
            return
        if step is None:
            if event["sequence"] == 0:
                await self._post(ctx, stream, reply_to, str(event["text"]), slack)
            return
        if shown is None or shown.broken:
            self.counts["skipped"].inc()
            return
        await self._grow(shown, event, slack)

    async def _post(
        self, ctx: Context, stream: str, reply_to: Any, text: str, slack: SlackSender
    ) -> None:
        journal = self.sent.journal
        step = await journal.intent(ctx, preview_step_id(stream), PREVIEW, key=stream)
        outcome = await slack.preview(reply_to, text.rstrip() + WRITING, stream)
        if not isinstance(outcome, Sent) or outcome.provider_message_id is None:
            self.counts["failed"].inc()
            log.info("no Slack preview for stream %s: %s", stream, _error(outcome))
            await journal.done(ctx, step, {"ts": None})
            return
        channel = str(reply_to["address"])
        self._shown[stream] = _Shown(channel, outcome.provider_message_id, text)
        await journal.done(ctx, step, {"ts": outcome.provider_message_id, "channel": channel})
        self.counts["posted"].inc()

    async def _grow(self, shown: _Shown, event: Event, slack: SlackSender) -> None:
        shown.heard_at = time.monotonic()
        sequence = int(event["sequence"])
        if sequence == 0:  # the answer is being written again
            shown.text = ""
        elif sequence != shown.next_sequence:
            shown.broken = True
            self.counts["skipped"].inc()
            return
        shown.next_sequence = sequence + 1
        shown.text += str(event["text"])
        if time.monotonic() - shown.updated_at < self.interval:
            self.counts["skipped"].inc()  # shown with a later update, or the answer
            return
        outcome = await slack.update(shown.channel, shown.ts, shown.text.rstrip() + WRITING)
        # Counted from when Slack answered: the next update reaches it an interval later.
        shown.updated_at = time.monotonic()
        self.counts["updated" if isinstance(outcome, Sent) else "failed"].inc()

    async def _end(
        self,
        ctx: Context,
        stream: str,
        step: Step | None,
        slack: SlackSender,
    ) -> None:
        """The stream ended without an answer: delete its message, close the step."""
        self._shown.pop(stream, None)
        message = _message(step)
        if message is not None:
            outcome = await slack.delete(*message)
            self.counts["deleted" if isinstance(outcome, Sent) else "failed"].inc()
        await self._close(ctx, stream, step)

    # ------------------------------------------------------------------ the answer

    async def take_over(self, ctx: Context, response: Event) -> tuple[str, str] | None:
        """The answer ``response`` is about to be sent: the (channel, ts) of its stream's
        preview message, which it is to update, or None (it is posted as usual). Either
        way the stream is closed first, so no delta posts or updates it any more."""
        stream = response.get("stream_id")
        if stream is None:
            return None
        stream = str(stream)
        step = self.sent.journal.find(ctx, preview_step_id(stream))
        shown = self._shown.pop(stream, None)
        message = _message(step)
        if step is not None and step.uncertain:
            # Posted, but its ts was not recorded (a crash): look for it.
            message = await self._find(response, step)
        if step is None or not _closed(step):
            await self._close(ctx, stream, step, message)
        if message is not None and shown is not None:
            # At most one update per interval, the answer's included.
            wait = shown.updated_at + self.interval - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
        return message

    def final_sender(self, slack: SlackSender, message: tuple[str, str]) -> FinalUpdate:
        """The adapter that sends the answer as the last update of ``message``."""
        return FinalUpdate(slack, *message)

    async def _find(self, response: Event, step: Step) -> tuple[str, str] | None:
        slack = self._slack()
        if not isinstance(slack, SlackSender):
            return None
        found = await slack.find_preview(response, str(step.key), step.at_ms)
        if isinstance(found, Sent) and found.provider_message_id is not None:
            return str(response["reply_to"]["address"]), found.provider_message_id
        return None

    async def _close(
        self,
        ctx: Context,
        stream: str,
        step: Step | None,
        message: tuple[str, str] | None = None,
    ) -> None:
        journal = self.sent.journal
        if step is None:  # nothing was posted: only the closing is recorded
            source = (ctx.topic, ctx.partition, ctx.offset)
            step = Step(preview_step_id(stream), PREVIEW, INTENT, source, 0, key=stream)
        if message is None:
            message = _message(step)
        channel, ts = message if message is not None else (None, None)
        await journal.done(ctx, step, {"ts": ts, "channel": channel, "closed": True})

    def _forget_stale(self) -> None:
        now = time.monotonic()
        for stream in [s for s, v in self._shown.items() if now - v.heard_at > STALE_SECONDS]:
            del self._shown[stream]


class FinalUpdate:
    """Sends a Slack answer as the last update of its preview's message."""

    def __init__(self, slack: SlackSender, channel: str, ts: str) -> None:
        self.slack = slack
        self.channel = channel
        self.ts = ts

    async def send(self, response: Event) -> Outcome:
        outcome = await self.slack.update(
            self.channel, self.ts, str(response["text"]), str(response.id)
        )
        if isinstance(outcome, Sent):
            return Sent(self.ts, outcome.http_status)
        if isinstance(outcome, PermanentFailure):
            # The preview is gone (deleted in Slack, say): the answer is posted instead.
            log.info("preview %s could not be updated (%s); posting", self.ts, outcome.error)
            return await self.slack.send(response)
        return outcome

    async def find_sent(
        self, response: Event, since_ms: int
    ) -> Sent | Retryable | PermanentFailure | None:
        """As the Slack adapter: the message carrying the response id (set by the update)."""
        return await self.slack.find_sent(response, since_ms)


def preview_step_id(stream_id: str) -> str:
    """The journal step of the preview message of the stream ``stream_id``."""
    return step_id(stream_id, PREVIEW)


def _closed(step: Step) -> bool:
    return step.state == DONE and bool((step.result or {}).get("closed"))


def _message(step: Step | None) -> tuple[str, str] | None:
    result = step.result if step is not None else None
    if not result or not result.get("ts") or not result.get("channel"):
        return None
    return str(result["channel"]), str(result["ts"])


def _error(outcome: Outcome) -> str:
    return getattr(outcome, "error", "no message ts")
