"""Where each response's send stands, in delivery's words, over its journal's steps.

Sending a response is one step of delivery's journal (:mod:`pipeline.journal`):
``step_id(response id, "send")``, of kind ``send``, keyed by the response id (the
idempotency key web and e-mail send with). Delivery names where a send stands in its own
words (:class:`SentEntry`), mapped to and from the step:

- ``attempted``: an ``intent`` of attempt n, recorded before it went out, no answer yet.
  Read back, it is *uncertain* (:mod:`pipeline.services.delivery.uncertain`);
- ``sent``: ``done``, result ``{"outcome": "sent", "provider_message_id": ...}``;
- ``refused``: ``done``, result ``{"outcome": "refused", "error": ...}``: the channel did
  not take attempt n, another follows (its number counts on);
- ``failed``: ``done``, result ``{"outcome": "failed", "error": ...}``: given up and
  dead-lettered; a redrive starts afresh;
- ``unconfirmed``: ``unknown``, with the reason: an uncertain attempt not repeated
  (at most once).

The topic (``delivery.sent_topic``) held the sent store's values before the journal,
``{"v": 1, "sent": [entry, ...]}`` per conversation; :func:`upgrade` reads them, as a
rolling upgrade meets them, and the journal writes a conversation in its own form from
its next send on. The topic must be co-partitioned with ``response_ready``
(:func:`check_copartitioned`): partition N of it records the sends of partition N's
responses.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pipeline.errors import ConfigError
from pipeline.journal import DONE, INTENT, UNKNOWN, Step, step_id
from pipeline.journal.steps import decode_steps
from pipeline.state.changelog import partition_counts

SEND = "send"  # the journal's kind of step for sending a response

ATTEMPTED = "attempted"
SENT = "sent"
REFUSED = "refused"
FAILED = "failed"
UNCONFIRMED = "unconfirmed"

# Where a response was read when the sent store recorded it: not recorded.
UNRECORDED_SOURCE = ("", -1, -1)


@dataclass(frozen=True, slots=True)
class SentEntry:
    """Where one response stands: ``state`` is ``sent`` (the channel accepted it),
    ``attempted`` (attempt ``attempt`` went out at ``sent_at_ms``, no answer recorded),
    ``refused`` (the channel refused that attempt; another follows), ``failed``, or
    ``unconfirmed`` (an uncertain attempt not repeated: at-most-once; ``error`` says why).

    Entries the sent store wrote before the state existed were all sent, hence its
    default.
    """

    response_id: str
    attempt: int
    provider_message_id: str | None
    sent_at_ms: int
    state: str = SENT
    error: str | None = None

    @property
    def uncertain(self) -> bool:
        """An attempt went out and no answer was recorded: it may have arrived."""
        return self.state == ATTEMPTED


def send_step_id(response_id: object) -> str:
    """The journal step of sending the response ``response_id``."""
    return step_id(response_id, SEND)


def answer(
    state: str, *, provider_id: str | None = None, error: str | None = None
) -> dict[str, Any]:
    """The result recorded with a ``done`` step: the channel's answer, ``state`` being
    ``sent``, ``refused`` or ``failed``."""
    if state == SENT:
        return {"outcome": SENT, "provider_message_id": provider_id}
    return {"outcome": state, "error": error}


def entry_of(step: Step) -> SentEntry:
    """A send step in delivery's words."""
    result = step.result or {}
    if step.state == INTENT:
        state = ATTEMPTED
    elif step.state == UNKNOWN:
        state = UNCONFIRMED
    else:  # done, or decided by an operator: the outcome recorded
        state = str(result.get("outcome", SENT))
    return SentEntry(
        response_id=step.key or step.id.split("/", 1)[0],
        attempt=step.attempt,
        provider_message_id=result.get("provider_message_id"),
        sent_at_ms=step.at_ms,
        state=state,
        error=step.error or result.get("error"),
    )


def step_of(entry: SentEntry, source: tuple[str, int, int]) -> Step:
    """The send step ``entry`` stands for, of the response read at ``source``."""
    journal_state = {ATTEMPTED: INTENT, UNCONFIRMED: UNKNOWN}.get(entry.state, DONE)
    if journal_state == INTENT:
        result, error = None, None
    elif journal_state == UNKNOWN:
        result, error = None, entry.error
    else:
        result = answer(entry.state, provider_id=entry.provider_message_id, error=entry.error)
        error = None
    return Step(
        send_step_id(entry.response_id),
        SEND,
        journal_state,
        source,
        entry.sent_at_ms,
        entry.attempt,
        entry.response_id,
        result,
        error,
    )


def upgrade(value: Mapping[str, Any]) -> list[Step]:
    """The send steps of a value the sent store wrote, ``{"v": 1, "sent": [...]}``."""
    known = set(SentEntry.__dataclass_fields__)
    return [
        step_of(SentEntry(**{k: v for k, v in entry.items() if k in known}), UNRECORDED_SOURCE)
        for entry in value.get("sent", [])
    ]


def decode_value(value: bytes) -> list[SentEntry]:
    """What one record of the topic says, in delivery's words, oldest first (a value in
    the journal's form or the sent store's)."""
    document: dict[str, Any] = json.loads(value)
    steps = decode_steps(document) if "steps" in document else upgrade(document)
    return [entry_of(step) for step in steps if step.kind == SEND]


def check_copartitioned(config: Mapping[str, Any], changelog: str, source: str) -> None:
    """Refuse to guess what was sent: ConfigError when ``changelog`` (the physical topic
    name) does not exist or has another partition count than ``source``. Blocking."""
    counts = partition_counts(config, [changelog, source])
    for name, count in counts.items():
        if count == 0:
            raise ConfigError(
                f"topic {name} does not exist: create it from topics/ (pipeline topics apply)"
            )
    if counts[changelog] != counts[source]:
        raise ConfigError(
            f"{changelog} has {counts[changelog]} partitions and {source} {counts[source]}: "
            "they must match, partition N of one records what was sent for partition N of "
            "the other"
        )
