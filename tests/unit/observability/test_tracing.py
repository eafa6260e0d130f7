"""W3C traceparent propagation."""

from __future__ import annotations

import re

import pytest

from pipeline.observability.tracing import (
    child_traceparent,
    event_traceparent,
    parent_trace,
    trace_from_id,
    trace_id,
)

FORMAT = re.compile(r"^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$")
PARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def parts(traceparent: str) -> list[str]:
    assert FORMAT.match(traceparent), traceparent
    return traceparent.split("-")


def test_child_keeps_the_trace_and_gets_a_new_span() -> None:
    child = parts(child_traceparent(PARENT))
    assert child[1] == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert child[2] != "00f067aa0ba902b7"
    assert child[3] == "01"


def test_child_keeps_the_flags() -> None:
    unsampled = PARENT[:-2] + "00"
    assert parts(child_traceparent(unsampled))[3] == "00"


def test_parent_as_bytes() -> None:
    child = parts(child_traceparent(PARENT.encode()))
    assert child[1] == "4bf92f3577b34da6a3ce929d0e0e4736"


def test_two_children_have_different_spans() -> None:
    assert parts(child_traceparent(PARENT))[2] != parts(child_traceparent(PARENT))[2]


@pytest.mark.parametrize(
    "parent",
    [
        None,
        "",
        b"",
        "garbage",
        "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",  # short trace id
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01",  # upper case
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",  # all-zero trace id
        b"\xff\xfe",
    ],
)
def test_invalid_or_absent_parent_starts_a_new_trace(parent: str | bytes | None) -> None:
    child = parts(child_traceparent(parent))
    assert child[0] == "00"
    assert child[1] != "0" * 32
    assert child[1] != "4bf92f3577b34da6a3ce929d0e0e4736"
    assert child[2] != "0" * 16


def test_new_traces_differ() -> None:
    assert parts(child_traceparent(None))[1] != parts(child_traceparent(None))[1]


def test_trace_id_reads_the_trace() -> None:
    assert trace_id(PARENT) == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert trace_id(PARENT.encode()) == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert trace_id(child_traceparent(PARENT)) == "4bf92f3577b34da6a3ce929d0e0e4736"


@pytest.mark.parametrize("value", [None, "", "nonsense", b"00-zz"])
def test_trace_id_of_invalid_is_none(value: str | bytes | None) -> None:
    assert trace_id(value) is None


def test_parent_trace_reads_trace_and_flags() -> None:
    assert parent_trace(PARENT) == ("4bf92f3577b34da6a3ce929d0e0e4736", "01")
    assert parent_trace(PARENT.encode()) == ("4bf92f3577b34da6a3ce929d0e0e4736", "01")
    assert parent_trace(PARENT[:-2] + "00") == ("4bf92f3577b34da6a3ce929d0e0e4736", "00")
    assert parent_trace("00-00000000000000000000000000000000-00f067aa0ba902b7-01") is None
    assert parent_trace("garbage") is None
    assert parent_trace(None) is None


def test_event_traceparent_takes_its_span_id_from_the_event_id() -> None:
    event_id = "3f2a5a52-8c1e-4d5e-9f1a-0c4b5d6e7f80"
    traceparent = event_traceparent(("4bf92f3577b34da6a3ce929d0e0e4736", "00"), event_id)
    assert parts(traceparent) == [
        "00",
        "4bf92f3577b34da6a3ce929d0e0e4736",
        "9f1a0c4b5d6e7f80",
        "00",
    ]


def test_trace_from_id_is_the_uuid_hex() -> None:
    trace = trace_from_id("11111111-2222-4333-8444-55555555555A")
    assert trace == ("11111111222243338444" + "55555555555a", "01")
    assert parts(event_traceparent(trace, "3f2a5a52-8c1e-4d5e-9f1a-0c4b5d6e7f80"))[1] == trace[0]
