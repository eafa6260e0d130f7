"""The delivery service through the real runtime in memory, handling responses again: after
an aborted transaction, a restart before the commit, a response arriving again after its
commit, and with the values the sent store wrote before the journal."""

from __future__ import annotations

import json
from typing import Any

import pytest
from confluent_kafka import KafkaError

from pipeline.channels.outbound import Sent
from pipeline.config import Settings
from pipeline.journal import INTENT, Step
from pipeline.journal.steps import encode_steps
from pipeline.runtime.service import Service
from pipeline.services.delivery import build
from pipeline.services.delivery.sent_store import decode_value, send_step_id
from pipeline.testing import TestService
from tests.unit.runtime_events import reply
from tests.unit.services.delivery.delivery_support import Script

EOS = {"processing_guarantee": "exactly_once", "commit_interval_seconds": 3600.0}
ALO = {"commit_interval_seconds": 3600.0}
ABORTABLE = KafkaError(KafkaError._STATE, "a broker failed", txn_requires_abort=True)


def delivery_service(senders: dict[str, Any], **section: Any) -> Service:
    values = {"backoff_initial_seconds": 0.01, "backoff_max_seconds": 0.02, **section}
    return build(Settings(metrics_port=0, delivery=values), senders=senders)


def to(channel: str, text: str = "hi") -> dict[str, Any]:
    """A response_ready body for ``channel``."""
    address = "http://127.0.0.1/cb" if channel == "web" else "+4917000000"
    return {**reply(text), "reply_to": {"channel": channel, "address": address}}


def journal(svc: TestService) -> list[tuple[str, Any]]:
    """(conversation, value) of each record of delivery's journal topic, in order."""
    return [
        ((r.key() or b"").decode(), json.loads(r.value() or b"null"))
        for r in svc.broker.records(svc.settings.topic("delivery_sent"))
    ]


def states(svc: TestService) -> list[tuple[str, int]]:
    """(state, attempt) of the newest send of each journal record, in delivery's words."""
    return [
        (e.state, e.attempt)
        for r in svc.broker.records(svc.settings.topic("delivery_sent"))
        for e in decode_value(r.value() or b"")[-1:]
    ]


def statuses(svc: TestService) -> list[tuple[str, str, int]]:
    return [
        (str(s["response_id"]), s["state"], s["attempt"]) for s in svc.outputs("delivery_status")
    ]


async def test_a_send_recorded_before_an_aborted_transaction_is_not_sent_again() -> None:
    sender = Script(Sent("m-1", 200))
    async with TestService(delivery_service({"web": sender}), **EOS) as svc:
        event = await svc.send("response_ready", to("web"), conversation_id="c1")
        await svc.settle()
        svc.broker.fail_next_commit(ABORTABLE)
        await svc.commit()  # aborted: the response is handled again from the committed offset
        assert svc.broker.transactions["aborted"] == 1
        await svc.settle()
        await svc.commit()
        assert svc.broker.transactions["committed"] >= 1
        committed = statuses(svc)
    assert len(sender.sent) == 1, "the channel got the response once"
    # The aborted transaction's status is gone; the repeat reports the send as it was.
    assert committed == [(str(event.id), "sent", 1)]
    # Attempt and answer written once each, at once, outside the transaction.
    assert states(svc) == [("attempted", 1), ("sent", 1)]


@pytest.mark.parametrize("mode", [ALO, EOS], ids=["at_least_once", "exactly_once"])
async def test_a_send_recorded_before_a_restart_without_a_commit_is_not_sent_again(
    mode: dict[str, Any],
) -> None:
    sender = Script(Sent("m-1", 200))
    async with TestService(delivery_service({"web": sender}), **mode) as first:
        event = await first.send("response_ready", to("web"), conversation_id="c1")
        await first.settle()
    broker = first.broker
    broker.offsets.clear()  # as if it had died before committing
    async with TestService(delivery_service({"web": sender}), broker=broker, **mode) as again:
        await again.settle()
        await again.commit()
        reported = statuses(again)
    assert len(sender.sent) == 1
    assert (str(event.id), "sent", 1) in reported
    assert states(again) == [("attempted", 1), ("sent", 1)]


@pytest.mark.parametrize("mode", [ALO, EOS], ids=["at_least_once", "exactly_once"])
async def test_an_attempt_without_an_answer_is_resolved_as_its_channel_allows(
    mode: dict[str, Any],
) -> None:
    web, whatsapp = Script(Sent("m-web", 200)), Script(Sent("never"))
    service = delivery_service(
        {"web": web, "whatsapp": whatsapp}, whatsapp_guarantee="at_most_once"
    )
    svc = TestService(service, **mode)
    responses = [
        await svc.send("response_ready", to("web"), conversation_id="c-web"),
        await svc.send("response_ready", to("whatsapp"), conversation_id="c-wa"),
    ]
    # An earlier instance recorded each attempt and stopped before the answer came.
    for response in responses:
        rid = str(response.id)
        attempt = Step(send_step_id(rid), "send", INTENT, ("t", 0, 0), 1_000, 1, rid)
        value = json.dumps(encode_steps([attempt])).encode()
        svc.broker.append(svc.settings.topic("delivery_sent"), response.conversation_id, value)
    async with svc:
        await svc.settle()
        await svc.commit()
        reported = sorted(statuses(svc))
    web_response, whatsapp_response = (str(r.id) for r in responses)
    # Web: sent again, with the same response id (its Idempotency-Key); WhatsApp at most
    # once: not sent again, and reported unconfirmed.
    assert [str(e.id) for e in web.sent] == [web_response]
    assert whatsapp.sent == []
    assert reported == sorted([(web_response, "sent", 2), (whatsapp_response, "unconfirmed", 1)])


async def test_a_response_arriving_again_after_its_commit_is_not_sent_again() -> None:
    sender = Script(Sent("m-1", 200))
    service = delivery_service({"web": sender}, sent_ids_per_conversation=2)
    async with TestService(service, **ALO) as svc:
        first = await svc.send("response_ready", to("web", "one"), conversation_id="c1")
        second = await svc.send("response_ready", to("web", "two"), conversation_id="c1")
        await svc.settle()
        await svc.commit()
        await svc.until(lambda: _confirmed(svc, 2), "the commit to be confirmed")
        # The same response_ready again, at a later offset (an agent repeating its output).
        await svc.send_event(second)
        await svc.settle()
        third = await svc.send("response_ready", to("web", "three"), conversation_id="c1")
        await svc.settle()
        # Only the newest two are kept: the first one is forgotten.
        await svc.send_event(first)
        await svc.settle()
    assert [e["text"] for e in sender.sent] == ["one", "two", "three", "one"]
    kept = [s["key"] for s in journal(svc)[-1][1]["steps"]]
    assert kept == [str(third.id), str(first.id)]
    metric = service.registry.get_sample_value(
        "pipeline_journal_steps_total",
        {"service": "delivery", "journal": "delivery_sent", "kind": "send", "outcome": "reused"},
    )
    assert metric == 1


def _confirmed(svc: TestService, offset: int) -> bool:
    return any(p.durable == offset for p in svc.runner.partitions.values())


async def test_the_sent_stores_values_are_read_back_and_written_again_in_the_journals_form() -> (
    None
):
    sender = Script(Sent("m-new", 200))
    svc = TestService(delivery_service({"web": sender}), **ALO)
    before = await svc.send("response_ready", to("web", "sent before"), conversation_id="c1")
    # As the sent store wrote it before the journal (a rolling upgrade meets it).
    old = {
        "v": 1,
        "sent": [
            {
                "response_id": str(before.id),
                "channel": "web",
                "attempt": 1,
                "provider_message_id": "m-old",
                "sent_at_ms": 5,
                "state": "sent",
            }
        ],
    }
    topic = svc.settings.topic("delivery_sent")
    svc.broker.append(topic, "c1", json.dumps(old, separators=(",", ":")).encode())
    async with svc:
        await svc.settle()
        after = await svc.send("response_ready", to("web", "after"), conversation_id="c1")
        await svc.settle()
        reported = statuses(svc)
    assert [e["text"] for e in sender.sent] == ["after"], "the old record was understood"
    assert (str(before.id), "sent", 1) in reported
    _, value = journal(svc)[-1]
    assert "sent" not in value and value["v"] == 1
    assert [(s["key"], s["state"]) for s in value["steps"]] == [
        (str(before.id), "done"),
        (str(after.id), "done"),
    ]
    assert value["steps"][0]["result"]["provider_message_id"] == "m-old"
