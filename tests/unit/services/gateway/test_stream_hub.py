"""A browser stream's marks and what it sends: messages and deltas each once, in their
topic's order; no delta of an answer already sent; the mark it resumes from."""

from __future__ import annotations

import pytest

from pipeline.channels.web.stream_log import Position, StreamMark
from pipeline.config import Settings
from pipeline.services.gateway.stream_hub import Stream, StreamHub
from pipeline.services.gateway.stream_items import Delta, Outgoing


@pytest.mark.parametrize(
    ("text", "mark"),
    [
        ("3-42", StreamMark(3, 42, None)),
        ("3-42.7", StreamMark(3, 42, 7)),
        ("0--1.-1", StreamMark(0, -1, -1)),
        (" 1-5.0 ", StreamMark(1, 5, 0)),
        ("3-42.", None),
        ("3-4x", None),
        ("banana", None),
    ],
)
def test_a_mark_names_a_position_in_both_topics(text: str, mark: StreamMark | None) -> None:
    assert StreamMark.parse(text) == mark
    if mark is not None:
        assert StreamMark.parse(str(mark)) == mark
        assert mark.position == Position(mark.partition, mark.offset)


def message(offset: int, stream_id: str | None = None) -> Outgoing:
    return Outgoing(
        Position(1, offset), "c", f"m{offset}", f"r{offset}", "hi", None, False, stream_id
    )


def delta(offset: int, stream_id: str, sequence: int = 0) -> Delta:
    return Delta(1, offset, "c", f"d{offset}", stream_id, sequence, "w", False)


def test_each_item_is_sent_once_and_the_mark_follows() -> None:
    stream = Stream("t", "c", partition=1, last_offset=9, last_delta=99)
    assert str(stream.mark) == "1-9.99"
    assert stream.fresh(delta(100, "s1"))
    assert not stream.fresh(delta(100, "s1")), "the same delta again"
    assert not stream.fresh(delta(99, "s1", 1)), "at or before the mark"
    assert stream.fresh(delta(101, "s1", 1))
    assert str(stream.mark) == "1-9.101"
    assert stream.fresh(message(10, "s1"))
    assert not stream.fresh(message(10, "s1"))
    assert str(stream.mark) == "1-10.101"
    # A delta of the answer just sent (a straggler) is not sent; others are.
    assert not stream.fresh(delta(102, "s1", 2))
    assert stream.fresh(delta(103, "s2"))
    assert str(stream.mark) == "1-10.103"


def test_a_stream_opened_before_the_reader_starts_has_a_mark() -> None:
    hub = StreamHub(Settings(metrics_port=0))
    stream = hub.open("t", "web:t:ada")
    assert str(stream.mark) == "0--1"
