"""Where a send stands in delivery's words, over its journal step, and the sent store's
values (before the journal) read back."""

from __future__ import annotations

import json

from pipeline.journal import DONE, INTENT, UNKNOWN
from pipeline.journal.steps import encode_steps
from pipeline.services.delivery.sent_store import (
    ATTEMPTED,
    FAILED,
    REFUSED,
    SENT,
    UNCONFIRMED,
    SentEntry,
    decode_value,
    entry_of,
    step_of,
    upgrade,
)

SOURCE = ("p.response_ready", 3, 17)


def test_each_state_is_a_send_step_and_reads_back_the_same() -> None:
    journal_states = {
        ATTEMPTED: INTENT,
        SENT: DONE,
        REFUSED: DONE,
        FAILED: DONE,
        UNCONFIRMED: UNKNOWN,
    }
    for state, journal_state in journal_states.items():
        provider = "p-1" if state == SENT else None
        error = None if state in (ATTEMPTED, SENT) else f"why {state}"
        entry = SentEntry("r-1", 2, provider, 1_700_000_000_000, state, error)
        step = step_of(entry, SOURCE)
        assert (step.id, step.kind, step.state, step.key, step.attempt, step.source) == (
            "r-1/send/0",
            "send",
            journal_state,
            "r-1",
            2,
            SOURCE,
        )
        assert entry_of(step) == entry
        assert step.uncertain == entry.uncertain == (state == ATTEMPTED)


def test_a_sent_store_value_reads_back_as_send_steps() -> None:
    old = b'{"v":1,"sent":[{"response_id":"r-1","channel":"web","attempt":1,'
    old += b'"provider_message_id":null,"sent_at_ms":5},'
    old += b'{"response_id":"r-2","channel":"slack","attempt":2,"provider_message_id":null,'
    old += b'"sent_at_ms":7,"state":"attempted"},'
    old += b'{"response_id":"r-3","channel":"whatsapp","attempt":1,"provider_message_id":null,'
    old += b'"sent_at_ms":9,"state":"unconfirmed","error":"at most once"}]}'
    sent, attempted, unconfirmed = decode_value(old)
    # Entries written before states existed were all sent.
    assert (sent.state, sent.uncertain, sent.error) == ("sent", False, None)
    assert attempted == SentEntry("r-2", 2, None, 7, ATTEMPTED)
    assert attempted.uncertain
    assert (unconfirmed.state, unconfirmed.error) == (UNCONFIRMED, "at most once")
    steps = upgrade(json.loads(old))
    assert [(s.id, s.state) for s in steps] == [
        ("r-1/send/0", DONE),
        ("r-2/send/0", INTENT),
        ("r-3/send/0", UNKNOWN),
    ]
    # Written again in the journal's form, the same sends read back.
    again = json.dumps(encode_steps(steps)).encode()
    assert decode_value(again) == [sent, attempted, unconfirmed]
