"""The tool catalog without a broker: its records, a service's advertising decisions
(advertise, leave, refuse, withdraw), and what the agent offers per tenant."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Mapping
from typing import Any

import pytest

from pipeline.config import Settings, bundled_dir
from pipeline.errors import ConfigError
from pipeline.events.catalog import parse_known
from pipeline.events.model import utc_now
from pipeline.events.serde import SingleObjectSerde, encode_with
from pipeline.state.changelog import Restored
from pipeline.toolbox import AT_MOST_ONCE, IDEMPOTENT, KEYED, Tool, ToolRegistry, builtin_tools
from pipeline.toolbox.advertiser import Advertiser
from pipeline.toolbox.catalog import CatalogCodec, CatalogEntry, CatalogFollower, earlier_versions
from pipeline.toolbox.tool_offer import CatalogOffer

CODEC = CatalogCodec(bundled_dir("schemas"))
SETTINGS = Settings(metrics_port=0)


async def forecast(args: Mapping[str, Any]) -> str:
    return "sunny"


def weather(description: str = "Weather.", source: str = "plugin:weather") -> Tool:
    params = {"type": "object", "properties": {"city": {"type": "string"}}}
    return Tool("weather", description, forecast, params, source=source)


class Topic:
    """An in-memory catalog topic: records appended, read from an offset like Kafka."""

    def __init__(self) -> None:
        self.records: list[tuple[str, bytes | None]] = []

    def put(self, entry: CatalogEntry) -> None:
        self.records.append((entry.name, CODEC.encode(entry)))

    def read(self, starts: dict[int, int | None]) -> dict[int, Restored]:
        start = starts[0] or 0
        restored = Restored(0, start, len(self.records), start == 0)
        for key, value in self.records[start:]:
            restored.values[key] = None if value is None else CODEC.decode(value)
        return {0: restored}

    def follower(self, settings: Settings = SETTINGS) -> CatalogFollower:
        return CatalogFollower(settings, reader=self.read)


def test_records_round_trip_and_garbage_is_refused() -> None:
    entry = CatalogEntry.of(weather(), "tools-a")
    assert CODEC.decode(CODEC.encode(entry)) == entry
    assert entry.origin == "plugin:weather of tools service 'tools-a'"
    with pytest.raises(ValueError, match="not a ToolAdvertised record"):
        CODEC.decode(b"\xc3\x01garbage!")


async def test_a_service_advertises_its_tools_and_withdraws_what_it_lost() -> None:
    topic = Topic()
    topic.put(CatalogEntry.of(weather(), "tools"))  # from its last run
    topic.put(CatalogEntry("old_tool", "Gone.", {"type": "object"}, "tools", "plugin:old"))
    follower = topic.follower()
    await follower.refresh()
    registry = ToolRegistry([*builtin_tools(SETTINGS.tools), weather()])
    advertiser = Advertiser("tools", registry, follower)
    advertise, withdraw = advertiser.plan(strict=True)
    assert sorted(e.name for e in advertise) == ["calculator", "current_time", "knowledge_lookup"]
    assert withdraw == ["old_tool"]
    assert advertiser.serves("weather") and advertiser.serves("never_heard_of")


async def test_a_clash_is_refused_naming_both_sources_and_the_same_spec_is_left_alone(
    caplog: pytest.LogCaptureFixture,
) -> None:
    topic = Topic()
    topic.put(CatalogEntry.of(weather(), "tools-a"))
    for tool in builtin_tools(SETTINGS.tools):
        topic.put(CatalogEntry.of(tool, "tools-a"))
    follower = topic.follower()
    await follower.refresh()
    other = weather("Another weather.", source="plugin:other")
    advertiser = Advertiser(
        "tools-b", ToolRegistry([*builtin_tools(SETTINGS.tools), other]), follower
    )
    with pytest.raises(ConfigError) as refused:
        advertiser.plan(strict=True)
    assert str(refused.value).startswith(
        "tool 'weather' from plugin:other of tools service 'tools-b' is refused: "
        "plugin:weather of tools service 'tools-a' already advertises a tool of that name "
        "with a different spec"
    )
    # An MCP tool arriving later is refused without stopping the service.
    mcp = weather("Another weather.", source="mcp:wx")
    advertiser = Advertiser(
        "tools-b", ToolRegistry([*builtin_tools(SETTINGS.tools), mcp]), follower
    )
    with caplog.at_level(logging.ERROR):
        assert advertiser.plan(strict=True) == ([], [])  # built-ins: same spec, left to tools-a
    assert "'weather' from mcp:wx of tools service 'tools-b' is refused" in caplog.text
    assert not advertiser.serves("weather")  # tools-a answers its calls
    assert not advertiser.serves("calculator")


async def test_an_mcp_source_swaps_its_tools_and_says_why_a_gone_tool_is_missing() -> None:
    follower = Topic().follower()
    await follower.refresh()
    advertiser = Advertiser("tools", ToolRegistry(), follower, enabled=["weather"])
    tides = Tool("tides", "Tides.", forecast, source="mcp:wx")
    advertiser.replace_source("mcp:wx", [weather(source="mcp:wx"), tides], "down")
    assert advertiser.registry.names == ["weather"]  # tides is not enabled here
    advertiser.replace_source("mcp:wx", [], "the MCP server 'wx' is not connected")
    assert advertiser.registry.names == []
    assert advertiser.why_missing("weather") == "the MCP server 'wx' is not connected"


async def test_mcp_tools_of_an_earlier_run_wait_for_their_server_before_being_withdrawn() -> None:
    topic = Topic()
    topic.put(CatalogEntry.of(weather(source="mcp:wx"), "tools"))  # from its last run
    follower = topic.follower()
    await follower.refresh()
    advertiser = Advertiser("tools", ToolRegistry(), follower)
    advertiser.expect_source("mcp:wx")
    # Before the server's first attempt: neither withdrawn nor unknown, and calls wait.
    assert advertiser.plan(strict=True)[1] == []
    assert advertiser.awaited_source("weather") == "mcp:wx"
    assert await advertiser.settled("mcp:wx", 0.05) is False
    waiting = asyncio.create_task(advertiser.settled("mcp:wx", 5))
    await asyncio.sleep(0)
    advertiser.replace_source("mcp:wx", [], "the MCP server 'wx' is not connected (refused)")
    assert await waiting is True
    # The first attempt failed: withdrawn, and a call is told why.
    assert advertiser.awaited_source("weather") is None
    assert advertiser.plan(strict=True)[1] == ["weather"]
    assert advertiser.why_missing("weather") == "the MCP server 'wx' is not connected (refused)"


async def test_an_mcp_server_that_connects_at_start_keeps_its_tools_advertised() -> None:
    topic = Topic()
    topic.put(CatalogEntry.of(weather(source="mcp:wx"), "tools"))
    follower = topic.follower()
    await follower.refresh()
    advertiser = Advertiser("tools", ToolRegistry(), follower)
    advertiser.expect_source("mcp:wx")
    advertiser.replace_source("mcp:wx", [weather(source="mcp:wx")], "down")
    assert advertiser.plan(strict=True) == ([], [])  # the same record: nothing to write
    assert advertiser.awaited_source("weather") is None
    assert await advertiser.settled("mcp:wx", 0.05) is True


async def test_the_agent_offers_what_is_advertised_narrowed_per_tenant() -> None:
    topic = Topic()
    for tool in [*builtin_tools(SETTINGS.tools), weather()]:
        topic.put(CatalogEntry.of(tool, "tools"))
    settings = Settings(metrics_port=0, tools={"tenant_tools": {"acme": ["weather", "nope"]}})
    offer = CatalogOffer(settings, topic.follower(settings))
    await offer.follower.refresh()
    every = [s.name for s in await offer.tools_for("t1")]
    assert every == ["calculator", "current_time", "knowledge_lookup", "weather"]
    (only,) = await offer.tools_for("acme")
    assert (only.name, only.description, only.parameters) == (
        "weather",
        "Weather.",
        weather().parameters,
    )


async def test_a_turn_at_start_waits_for_a_first_tool_then_uses_what_there_is() -> None:
    topic = Topic()
    settings = Settings(metrics_port=0, tools={"catalog_wait_seconds": 5})
    offer = CatalogOffer(settings, topic.follower(settings))
    follow = asyncio.create_task(offer.follow(None))  # type: ignore[arg-type]
    asking = asyncio.create_task(offer.tools_for("t1"))
    await offer.follower.loaded.wait()
    assert not asking.done()  # read, but nothing advertised yet: the turn waits
    topic.put(CatalogEntry.of(weather(), "tools"))
    assert [s.name for s in await asyncio.wait_for(asking, 5)] == ["weather"]
    follow.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await follow
    # Nothing is ever advertised: the turn goes on without tools once the wait is over.
    empty = CatalogOffer(Settings(metrics_port=0, tools={"catalog_wait_seconds": 0.3}), None)
    empty.follower = Topic().follower()
    assert await asyncio.wait_for(empty.tools_for("t1"), 5) == ()


# ToolAdvertised as the first tools services wrote it, before tools declared a guarantee.
TOOL_ADVERTISED_V1 = {
    "type": "record",
    "name": "ToolAdvertised",
    "namespace": "pipeline.events",
    "fields": [
        {"name": "name", "type": "string"},
        {"name": "description", "type": "string"},
        {"name": "parameters_json", "type": "string"},
        {"name": "service", "type": "string"},
        {"name": "source", "type": "string"},
        {"name": "advertised_at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
    ],
}


def test_the_catalog_carries_each_tools_guarantee() -> None:
    entries = [CatalogEntry.of(t, "tools") for t in builtin_tools(SETTINGS.tools)]
    assert {e.guarantee for e in entries} == {IDEMPOTENT}
    refund = Tool("refund", "Refund.", forecast, guarantee=AT_MOST_ONCE)
    for entry in [*entries, CatalogEntry.of(weather(), "tools"), CatalogEntry.of(refund, "t")]:
        assert CODEC.decode(CODEC.encode(entry)) == entry
    assert CODEC.decode(CODEC.encode(CatalogEntry.of(weather(), "t"))).guarantee == KEYED
    assert CODEC.decode(CODEC.encode(CatalogEntry.of(refund, "t"))).guarantee == AT_MOST_ONCE


def test_a_record_written_before_guarantees_decodes_without_one() -> None:
    old = parse_known(TOOL_ADVERTISED_V1)
    schemas = bundled_dir("schemas")
    current = SingleObjectSerde.for_record(schemas, "tool_advertised", "test").catalog.reader(
        "tool_advertised"
    )
    assert current.fingerprint != old.fingerprint
    assert parse_known(earlier_versions(current.parsed)[0]).fingerprint == old.fingerprint
    record = {
        "name": "weather",
        "description": "Weather.",
        "parameters_json": '{"type": "object"}',
        "service": "tools",
        "source": "plugin:weather",
        "advertised_at": utc_now(),
    }
    entry = CODEC.decode(encode_with(old, record))
    assert entry == CatalogEntry(
        "weather", "Weather.", {"type": "object"}, "tools", "plugin:weather", None
    )


async def test_a_tool_advertised_without_a_guarantee_is_advertised_again_with_it() -> None:
    topic = Topic()
    before = CatalogEntry.of(weather(), "tools")
    topic.put(dataclasses.replace(before, guarantee=None))  # from a run of an older version
    follower = topic.follower()
    await follower.refresh()
    advertiser = Advertiser("tools", ToolRegistry([weather()]), follower)
    advertise, withdraw = advertiser.plan(strict=True)
    assert (advertise, withdraw) == ([before], [])
