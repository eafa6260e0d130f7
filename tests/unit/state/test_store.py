"""The changelog-backed store: writes go local and to the changelog; restore applies it."""

from __future__ import annotations

import logging

import pytest
from prometheus_client import CollectorRegistry

from pipeline.config import Settings, bundled_dir
from pipeline.events.catalog import SchemaCatalog
from pipeline.events.model import Event, Metadata
from pipeline.events.serde import SingleObjectSerde
from pipeline.runtime.context import Context
from pipeline.state import ChangelogStore, StateNotReadyError, decode_value, encode_value
from pipeline.state.changelog import Restored

SERDE = SingleObjectSerde(SchemaCatalog.load(bundled_dir("schemas")))
SETTINGS = Settings(topic_prefix="p.", metrics_port=0)


class FakeChangelog:
    """Stands in for the Kafka changelog: a log per partition, read from a start offset."""

    def __init__(self) -> None:
        self.logs: dict[int, list[tuple[str, dict[str, object] | None]]] = {}
        self.low: dict[int, int] = {}
        self.reads: list[tuple[list[str], dict[int, int | None]]] = []

    def append(self, partition: int, key: str, value: dict[str, object] | None) -> None:
        self.logs.setdefault(partition, []).append((key, value))

    def __call__(self, topics: list[str], starts: dict[int, int | None]) -> dict[int, Restored]:
        self.reads.append((topics, dict(starts)))
        out = {}
        for partition, start in starts.items():
            log = self.logs.get(partition, [])
            low = self.low.get(partition, 0)
            full = start is None or start < low
            begin = low if full or start is None else start
            result = Restored(partition, begin, len(log), full)
            for key, value in log[begin:]:
                result.values[key] = value
                result.records += 1
            out[partition] = result
        return out


def context(partition: int, conversation: str = "c1") -> Context:
    event = Event(
        Metadata.new("message_received", conversation, tenant_id="t", producer="test"),
        {},
    )
    return Context(
        event,
        service="agent",
        attempt=1,
        serde=SERDE,
        topic_for=SETTINGS.topic,
        traceparent=None,
        logger=logging.getLogger("test"),
        partition=partition,
    )


def store_with(
    changelog: FakeChangelog, registry: CollectorRegistry | None = None
) -> ChangelogStore:
    return ChangelogStore(
        SETTINGS, "state_changelog", service="agent", registry=registry, reader=changelog
    )


def test_values_are_compact_sorted_json_objects() -> None:
    assert encode_value({"b": 1, "a": "é"}) == '{"a":"é","b":1}'.encode()
    assert decode_value(b'{"a": [1]}') == {"a": [1]}
    with pytest.raises(ValueError, match="not a JSON object"):
        decode_value(b"[1, 2]")


async def test_restore_applies_the_changelog_and_tombstones_delete() -> None:
    changelog = FakeChangelog()
    changelog.append(0, "a", {"n": 1})
    changelog.append(0, "b", {"n": 1})
    changelog.append(0, "a", {"n": 2})
    changelog.append(0, "b", None)
    changelog.append(1, "z", {"n": 9})
    registry = CollectorRegistry()
    store = store_with(changelog, registry)
    await store.assigned([("p.message_received", 0), ("p.tool_result", 0)])
    assert changelog.reads == [(["p.message_received", "p.tool_result"], {0: None})]
    assert store.partitions == [0]
    assert dict(store.items(0)) == {"a": {"n": 2}}
    assert store.get(context(0, "a"), "a") == {"n": 2}
    assert store.get(context(0), "b") is None
    with pytest.raises(StateNotReadyError, match=r"state_changelog\[1\]"):
        store.get(context(1), "z")
    labels = {"service": "agent", "store": "state_changelog"}
    assert registry.get_sample_value("pipeline_state_restored_records_total", labels) == 4
    assert registry.get_sample_value("pipeline_state_keys", labels) == 1


async def test_a_partition_already_owned_through_another_topic_is_not_read_again() -> None:
    changelog = FakeChangelog()
    store = store_with(changelog)
    await store.assigned([("p.message_received", 0)])
    await store.assigned([("p.tool_result", 0)])
    assert len(changelog.reads) == 1


async def test_put_and_delete_write_locally_and_queue_changelog_records() -> None:
    store = store_with(FakeChangelog())
    await store.assigned([("p.message_received", 3)])
    ctx = context(3)
    store.put(ctx, "c1", {"history": ["hi"]})
    value = store.get(ctx, "c1")
    assert value == {"history": ["hi"]}
    assert value is not None
    value["history"].append("mutated copy")
    assert store.get(ctx, "c1") == {"history": ["hi"]}, "get returns a copy"
    store.delete(ctx, "c1")
    assert store.get(ctx, "c1") is None
    written = [(o.topic, o.key, o.value, o.event_type) for o in ctx.outgoing]
    assert written == [
        ("p.state_changelog", "c1", b'{"history":["hi"]}', "state_changelog"),
        ("p.state_changelog", "c1", None, "state_changelog"),
    ]


async def test_a_partition_coming_back_is_read_only_from_its_last_restore() -> None:
    changelog = FakeChangelog()
    changelog.append(0, "a", {"n": 1})
    store = store_with(changelog)
    await store.assigned([("p.message_received", 0)])
    # Our own write lands in the changelog too.
    store.put(context(0), "a", {"n": 2})
    changelog.append(0, "a", {"n": 2})
    await store.revoked([("p.message_received", 0)])
    assert store.partitions == []
    # Meanwhile another instance owned it and wrote.
    changelog.append(0, "b", {"n": 7})
    changelog.append(0, "a", None)
    await store.assigned([("p.message_received", 0)])
    assert changelog.reads[-1][1] == {0: 1}
    assert dict(store.items(0)) == {"b": {"n": 7}}


async def test_a_truncated_changelog_forces_a_full_restore() -> None:
    changelog = FakeChangelog()
    changelog.append(0, "a", {"n": 1})
    store = store_with(changelog)
    await store.assigned([("p.message_received", 0)])
    await store.revoked([("p.message_received", 0)])
    changelog.logs[0] = [("gone", None), ("b", {"n": 1}), ("c", {"n": 1})]
    changelog.low[0] = 2  # the log now starts beyond where this instance stopped reading
    await store.assigned([("p.message_received", 0)])
    assert dict(store.items(0)) == {"c": {"n": 1}}


async def test_retained_state_expires() -> None:
    changelog = FakeChangelog()
    changelog.append(0, "a", {"n": 1})
    store = ChangelogStore(
        SETTINGS, "state_changelog", service="agent", reader=changelog, retain_seconds=0
    )
    await store.assigned([("p.message_received", 0)])
    await store.revoked([("p.message_received", 0)])
    await store.assigned([("p.message_received", 0)])
    assert changelog.reads[-1][1] == {0: None}


async def test_a_failed_restore_leaves_the_partition_unowned() -> None:
    def broken(topics: list[str], starts: dict[int, int | None]) -> dict[int, Restored]:
        raise RuntimeError("broker gone")

    store = ChangelogStore(SETTINGS, "state_changelog", service="agent", reader=broken)
    with pytest.raises(RuntimeError, match="broker gone"):
        await store.assigned([("p.message_received", 0)])
    assert store.partitions == []
