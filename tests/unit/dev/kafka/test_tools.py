"""Reading Kafka's consumer-groups tool: the LAG column of ``--describe``."""

from __future__ import annotations

from pipeline.dev.kafka.tools import parse_group_description

DESCRIBED = """
Consumer group 'g1' has no active members.

GROUP TOPIC    PARTITION  CURRENT-OFFSET  LOG-END-OFFSET  LAG  CONSUMER-ID  HOST  CLIENT-ID
g1    inbox    0          20              20              0    -            -     -
g1    inbox    1          7               9               2    -            -     -
g1    replies  0          -               4               -    -            -     -
"""


def test_the_lag_of_each_partition_is_read_from_the_table() -> None:
    assert parse_group_description(DESCRIBED, "g1") == {
        ("inbox", 0): 0,
        ("inbox", 1): 2,
        ("replies", 0): None,
    }


def test_rows_of_another_group_and_text_around_the_table_are_ignored() -> None:
    assert parse_group_description(DESCRIBED, "g2") == {}
    assert parse_group_description("Error: the group does not exist.\n", "g1") == {}
