"""The event model: metadata kept in wire form, converted on access, and derived ids."""

from __future__ import annotations

import ast
import os
import pickle
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest

from pipeline.events.model import (
    Metadata,
    derived_id,
    from_millis,
    metadata_from_wire,
    now_millis,
    to_millis,
    utc_now,
)
from tests.paths import PACKAGE

EVENT = uuid.UUID("3f2a5a52-8c1e-4d5e-9f1a-0c4b5d6e7f80")
CORRELATION = uuid.UUID("11111111-2222-4333-8444-555555555555")
OCCURRED = datetime(2024, 5, 17, 9, 30, 12, 345000, tzinfo=UTC)


def meta(**overrides: object) -> Metadata:
    fields: dict[str, object] = {
        "event_id": EVENT,
        "event_type": "message_received",
        "conversation_id": "conv-1",
        "tenant_id": "acme",
        "correlation_id": CORRELATION,
        "causation_id": None,
        "occurred_at": OCCURRED,
        "producer": "gateway",
    }
    fields.update(overrides)
    return Metadata(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["agent/0", "agent/1", "tools/0", "ünïcode/3", "", "x" * 300])
def test_derived_id_is_uuid5(name: str) -> None:
    for namespace in (EVENT, CORRELATION, uuid.uuid4()):
        assert derived_id(str(namespace), name) == str(uuid.uuid5(namespace, name))


def test_derived_id_without_the_builtin_sha1_uses_hashlib() -> None:
    """A Python built without its own hash modules falls back to hashlib's SHA-1."""
    script = (
        "import sys, uuid; sys.modules['_sha1'] = None\n"
        "from pipeline.events import model\n"
        "ns = uuid.uuid4()\n"
        "assert model.derived_id(str(ns), 'agent/0') == str(uuid.uuid5(ns, 'agent/0'))\n"
        "print(type(model._sha1).__name__)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "partial"


def test_derived_id_accepts_upper_case_text() -> None:
    assert derived_id(str(EVENT).upper(), "a/0") == str(uuid.uuid5(EVENT, "a/0"))


def test_ids_and_times_read_as_python_values() -> None:
    m = meta(event_id=str(EVENT), correlation_id=str(CORRELATION), occurred_at=to_millis(OCCURRED))
    assert m.event_id == EVENT
    assert isinstance(m.event_id, uuid.UUID)
    assert m.correlation_id == CORRELATION
    assert m.causation_id is None
    assert m.occurred_at == OCCURRED
    assert m.occurred_at.tzinfo is not None
    assert m.occurred_millis == 1715938212345
    assert m.event_id is m.event_id  # converted once


def test_the_same_metadata_in_either_form_is_equal() -> None:
    as_objects = meta()
    as_text = meta(
        event_id=str(EVENT).upper(),
        correlation_id=str(CORRELATION),
        occurred_at=to_millis(OCCURRED),
    )
    assert as_objects == as_text
    assert hash(as_objects) == hash(as_text)
    assert as_objects != meta(producer="other")
    assert len({as_objects, as_text, meta(tenant_id="other")}) == 2


def test_record_is_the_wire_form_and_dict_the_python_form() -> None:
    m = meta(causation_id=CORRELATION)
    assert m.to_record() == {
        "event_id": str(EVENT),
        "event_type": "message_received",
        "conversation_id": "conv-1",
        "tenant_id": "acme",
        "correlation_id": str(CORRELATION),
        "causation_id": str(CORRELATION),
        "occurred_at": 1715938212345,
        "producer": "gateway",
    }
    assert m.to_dict()["event_id"] == EVENT
    assert m.to_dict()["occurred_at"] == OCCURRED
    assert Metadata.from_record(m.to_record()) == m
    assert Metadata.from_record(m.to_dict()) == m


def test_metadata_is_immutable() -> None:
    m = meta()
    with pytest.raises(AttributeError, match="immutable"):
        m.producer = "other"  # type: ignore[misc]
    with pytest.raises(AttributeError, match="immutable"):
        del m.tenant_id
    assert m.producer == "gateway"


def test_metadata_pickles_and_prints() -> None:
    m = meta(causation_id=CORRELATION)
    assert pickle.loads(pickle.dumps(m)) == m
    text = repr(m)
    assert str(EVENT) in text
    assert "2024-05-17T09:30:12.345000+00:00" in text


@pytest.mark.parametrize("bad", ["", "order-1234", str(EVENT)[:-1], "{" + str(EVENT) + "}"])
def test_an_id_that_is_not_canonical_uuid_text_is_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="not a UUID"):
        meta(event_id=bad)


def test_an_id_of_another_type_is_refused() -> None:
    with pytest.raises(TypeError, match="UUID"):
        meta(correlation_id=42)


def test_caused_continues_the_chain() -> None:
    cause = meta()
    child = cause.caused("response_ready", producer="agent")
    assert child.correlation_id == CORRELATION
    assert child.causation_id == EVENT
    assert child.tenant_id == "acme"
    assert child.conversation_id == "conv-1"
    assert child.event_id not in {EVENT, CORRELATION}
    derived = cause.caused_derived("response_ready", "agent/0", producer="agent")
    assert derived.event_id == uuid.uuid5(EVENT, "agent/0")
    assert derived.causation_id == EVENT
    moved = cause.caused_derived("timer_requested", "a/1", producer="a", conversation_id="c2")
    assert moved.conversation_id == "c2"


def test_new_starts_a_chain() -> None:
    m = Metadata.new("webhook_received", "conv-9", tenant_id="acme", producer="gateway")
    assert m.correlation_id == m.event_id
    assert m.causation_id is None
    assert abs(m.occurred_millis - now_millis()) < 5_000


def test_millis_round_trip_and_naive_times_are_utc() -> None:
    for millis in (0, 1, -1500, 1715938212345, 4102444800000):
        assert to_millis(from_millis(millis)) == millis
    naive = datetime(2024, 5, 17, 9, 30, 12, 345999)
    assert to_millis(naive) == 1715938212345
    plus_two = datetime(2024, 5, 17, 11, 30, 12, 345000, tzinfo=timezone(timedelta(hours=2)))
    assert to_millis(plus_two) == 1715938212345


def test_the_agent_and_the_scheduler_convert_with_the_same_helper() -> None:
    """A naive time means UTC everywhere (as Avro's timestamp-millis has it), not the
    machine's local time, and nothing but the event model converts epoch milliseconds."""
    from pipeline.services.agent import conversation
    from pipeline.services.scheduler import timers

    assert conversation.to_millis is to_millis
    assert timers.to_millis is to_millis and timers.from_millis is from_millis
    package = PACKAGE
    copies = [
        f"{path.relative_to(package)}: {node.name}"
        for path in package.rglob("*.py")
        if path != package / "events" / "model.py"
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.FunctionDef) and node.name.endswith(("to_millis", "from_millis"))
    ]
    assert not copies, copies
    local = subprocess.run(
        [
            sys.executable,
            "-c",
            "import datetime as d; from pipeline.services.scheduler.timers import to_millis; "
            "print(to_millis(d.datetime(2024, 5, 17, 9, 30, 12, 345000)))",
        ],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "TZ": "America/New_York"},
    )
    assert local.stdout.strip() == "1715938212345"


def test_from_millis_is_exact_where_floats_are_not() -> None:
    millis = 1715938212345
    assert from_millis(millis).microsecond == 345000
    assert to_millis(datetime(2024, 5, 17, 9, 30, 12, 344999, tzinfo=UTC)) == millis - 1


def test_utc_now_is_whole_milliseconds() -> None:
    now = utc_now()
    assert now.microsecond % 1000 == 0
    assert now.tzinfo is UTC
    assert abs(now - datetime.now(UTC)) < timedelta(seconds=5)


def test_metadata_from_wire_reads_the_lean_record() -> None:
    m = meta(causation_id=CORRELATION)
    assert metadata_from_wire(m.to_record()) == m
    assert metadata_from_wire({**m.to_record(), "causation_id": None}).causation_id is None


@pytest.mark.parametrize("field", ["event_id", "correlation_id", "causation_id"])
def test_metadata_from_wire_refuses_an_id_that_is_not_a_uuid(field: str) -> None:
    record = {**meta(causation_id=CORRELATION).to_record(), field: "order-1234"}
    with pytest.raises(ValueError, match="order-1234"):
        metadata_from_wire(record)


def test_metadata_from_wire_checks_each_id_not_only_their_concatenation() -> None:
    """Two ids that are wrong on their own can join into 72 well-formed characters."""
    event, correlation = str(EVENT), str(CORRELATION)
    short, long = event[:-1], event[-1] + correlation  # 35 + 37 characters
    record = {**meta().to_record(), "event_id": short, "correlation_id": long}
    with pytest.raises(ValueError, match=repr(short)):
        metadata_from_wire(record)
