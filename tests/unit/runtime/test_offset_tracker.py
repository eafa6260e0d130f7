"""Offset watermarks: commit only below the lowest unfinished offset of a partition."""

from __future__ import annotations

import random

import pytest

from pipeline.runtime.offset_tracker import PartitionOffsets


def tracker(*offsets: int) -> PartitionOffsets:
    partition = PartitionOffsets("message_received", 3)
    for offset in offsets:
        assert partition.received(offset)
    return partition


def test_new_partition_has_no_watermark() -> None:
    partition = PartitionOffsets("message_received", 3)
    assert partition.watermark() is None
    assert partition.buffered == 0
    assert (partition.topic, partition.partition) == ("message_received", 3)
    assert partition.committed is None
    assert partition.revoked is False


def test_watermark_is_the_first_unfinished_offset() -> None:
    partition = tracker(10, 11, 12)
    assert partition.watermark() == 10
    assert partition.buffered == 3


def test_out_of_order_finishes_wait_for_the_lowest() -> None:
    partition = tracker(10, 11, 12, 13)
    partition.finished(12)
    partition.finished(11)
    assert partition.watermark() == 10
    assert partition.buffered == 4
    partition.finished(10)
    assert partition.watermark() == 13
    assert partition.buffered == 1
    partition.finished(13)
    assert partition.watermark() == 14
    assert partition.buffered == 0


def test_all_finished_commits_past_the_last() -> None:
    partition = tracker(0, 1, 2)
    for offset in (0, 1, 2):
        partition.finished(offset)
    assert partition.watermark() == 3


def test_gaps_in_offsets_are_fine() -> None:
    # Compacted topics and transaction markers leave gaps between offsets.
    partition = tracker(5, 9, 20)
    partition.finished(9)
    assert partition.watermark() == 5
    partition.finished(5)
    assert partition.watermark() == 20
    partition.finished(20)
    assert partition.watermark() == 21


def test_duplicate_offset_is_rejected() -> None:
    partition = tracker(7)
    assert partition.received(7) is False
    assert partition.buffered == 1
    partition.finished(7)
    assert partition.watermark() == 8


def test_lower_offset_is_rejected() -> None:
    partition = tracker(7, 8)
    assert partition.received(3) is False
    assert partition.received(8) is False
    assert partition.buffered == 2
    assert partition.watermark() == 7


def test_receiving_after_everything_finished() -> None:
    partition = tracker(1)
    partition.finished(1)
    assert partition.watermark() == 2
    assert partition.received(2) is True
    assert partition.watermark() == 2
    assert partition.received(1) is False


@pytest.mark.parametrize("seed", range(20))
def test_watermark_never_passes_an_unfinished_offset(seed: int) -> None:
    rng = random.Random(seed)
    offsets: list[int] = []
    next_offset = rng.randrange(0, 1000)
    for _ in range(rng.randrange(1, 60)):
        offsets.append(next_offset)
        next_offset += rng.randrange(1, 4)
    partition = tracker(*offsets)
    order = offsets[:]
    rng.shuffle(order)
    finished: set[int] = set()
    previous = partition.watermark()
    for offset in order:
        partition.finished(offset)
        finished.add(offset)
        watermark = partition.watermark()
        assert watermark is not None and previous is not None
        unfinished = [o for o in offsets if o not in finished]
        expected = min(unfinished) if unfinished else offsets[-1] + 1
        assert watermark == expected
        assert all(o >= watermark for o in unfinished)
        assert watermark >= previous
        assert partition.buffered == len([o for o in offsets if o >= watermark])
        previous = watermark
    assert partition.watermark() == offsets[-1] + 1
    assert partition.buffered == 0
