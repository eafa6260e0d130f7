"""murmur2 against the values Apache Kafka's own UtilsTest expects."""

from __future__ import annotations

import pytest

from pipeline.partitioner import murmur2, partition_for

# From org.apache.kafka.common.utils.UtilsTest#testMurmur2.
KAFKA_CASES = {
    "21": -973932308,
    "foobar": -790332482,
    "a-little-bit-long-string": -985981536,
    "a-little-bit-longer-string": -1486304829,
    "lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
    "abc": 479470107,
}


@pytest.mark.parametrize(("key", "expected"), KAFKA_CASES.items())
def test_murmur2_matches_kafka(key: str, expected: int) -> None:
    assert murmur2(key.encode()) == expected


def test_partition_is_positive_hash_modulo_count() -> None:
    for key, value in KAFKA_CASES.items():
        assert partition_for(key, 12) == (value & 0x7FFFFFFF) % 12
        assert 0 <= partition_for(key, 7) < 7
