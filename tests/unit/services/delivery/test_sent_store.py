"""The sent store: what it remembers per conversation and how it is written."""

from __future__ import annotations

import json
from dataclasses import asdict

from pipeline.services.delivery.sent_store import SentEntry, SentStore, decode_value, encode_value


def entry(n: int) -> SentEntry:
    return SentEntry(f"r-{n}", "web", 1, f"p-{n}", 1_700_000_000_000 + n)


def test_records_and_finds_per_partition_and_conversation() -> None:
    store = SentStore(keep=10)
    value = store.record(3, "conv-a", entry(1))
    assert decode_value(value) == [entry(1)]
    assert store.get(3, "conv-a", "r-1") == entry(1)
    assert store.get(3, "conv-b", "r-1") is None
    assert store.get(4, "conv-a", "r-1") is None
    assert store.partitions == {3}


def test_value_holds_the_newest_entries_of_the_conversation() -> None:
    store = SentStore(keep=3)
    for n in range(5):
        value = store.record(0, "c", entry(n))
    assert [e.response_id for e in decode_value(value)] == ["r-2", "r-3", "r-4"]
    assert store.get(0, "c", "r-1") is None
    assert store.get(0, "c", "r-4") == entry(4)


def test_load_replaces_a_partition_and_drop_forgets_it() -> None:
    writer = SentStore(keep=5)
    values = {"c1": writer.record(1, "c1", entry(1)), "c2": writer.record(1, "c2", entry(2))}
    reader = SentStore(keep=5)
    reader.record(1, "stale", entry(9))
    reader.load(1, values)
    assert reader.get(1, "c1", "r-1") == entry(1)
    assert reader.get(1, "c2", "r-2") == entry(2)
    assert reader.get(1, "stale", "r-9") is None
    reader.drop([1, 7])
    assert reader.partitions == set()
    assert reader.get(1, "c1", "r-1") is None


def test_a_value_is_the_same_json_as_encoding_every_entry_at_once() -> None:
    store = SentStore(keep=3)
    for n in range(5):
        value = store.record(2, "c", entry(n))
    # An entry's error is left out when there is none.
    document = {"v": 1, "sent": [asdict(entry(n)) for n in (2, 3, 4)]}
    for fields in document["sent"]:
        del fields["error"]
    assert value == json.dumps(document, separators=(",", ":")).encode()
    assert value == encode_value([entry(2), entry(3), entry(4)])
    loaded = SentStore(keep=2)
    loaded.load(2, {"c": value})
    assert loaded.record(2, "c", entry(5)) == encode_value([entry(4), entry(5)])


def test_entries_written_before_states_existed_read_as_sent() -> None:
    old = b'{"v":1,"sent":[{"response_id":"r-1","channel":"web","attempt":1,'
    old += b'"provider_message_id":null,"sent_at_ms":5}]}'
    [read] = decode_value(old)
    assert (read.state, read.uncertain, read.error) == ("sent", False, None)


def test_a_response_has_one_entry_and_value_with_remembers_nothing() -> None:
    store = SentStore(keep=5)
    attempted = SentEntry("r-1", "slack", 1, None, 10, "attempted")
    value = store.value_with(0, "c", attempted)
    assert decode_value(value) == [attempted]
    assert store.get(0, "c", "r-1") is None
    store.record(0, "c", attempted)
    assert store.get(0, "c", "r-1") == attempted and attempted.uncertain
    sent = SentEntry("r-1", "slack", 1, "1.2", 11)
    store.record(0, "c", entry(2))
    value = store.record(0, "c", sent)
    assert decode_value(value) == [entry(2), sent]
