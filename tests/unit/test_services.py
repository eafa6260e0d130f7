"""Finding the service ``pipeline run NAME`` starts: built-ins and module:attribute paths."""

from __future__ import annotations

import logging
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.config import Settings, bundled_dir
from pipeline.errors import ConfigError
from pipeline.events.catalog import SchemaCatalog
from pipeline.events.model import Event, Metadata
from pipeline.events.serde import SingleObjectSerde
from pipeline.runtime.context import Context
from pipeline.runtime.service import Service
from pipeline.services import load_service

MODULE = "pipeline_test_custom_services"


@pytest.fixture
def settings() -> Settings:
    return Settings(topic_prefix="t-load.")


@pytest.fixture
def custom_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    (tmp_path / f"{MODULE}.py").write_text(
        textwrap.dedent(
            """
            from pipeline.runtime.service import Service

            INSTANCE = Service("ready-made")

            @INSTANCE.handler("tool_called")
            async def run_tool(event, ctx):
                pass

            def factory(settings):
                service = Service("built", settings=settings)

                @service.handler("timer_fired")
                async def on_timer(event, ctx):
                    pass

                return service

            def not_a_factory(settings):
                return 42

            NOT_A_SERVICE = "just a string"
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    yield MODULE
    sys.modules.pop(MODULE, None)


def test_echo_is_built_in(settings: Settings) -> None:
    service = load_service("echo", settings)
    assert isinstance(service, Service)
    assert service.name == "echo"
    assert service.settings is settings
    assert [(h.event_type, h.name) for h in service.handlers] == [("message_received", "echo")]


async def test_echo_answers_with_the_text(settings: Settings) -> None:
    (spec,) = load_service("echo", settings).handlers
    serde = SingleObjectSerde(SchemaCatalog.load(bundled_dir("schemas")))
    meta = Metadata.new("message_received", "conv-1", tenant_id="acme", producer="test")
    reply_to = {"channel": "web", "address": "https://example.com/cb", "thread_id": None}
    event = Event(
        meta,
        {
            "channel": "web",
            "sender_id": "u1",
            "sender_name": None,
            "text": "ping",
            "reply_to": reply_to,
            "external_id": "m-1",
            "attachments": [],
            "attributes": {},
        },
    )
    ctx = Context(
        event,
        service="echo",
        attempt=1,
        serde=serde,
        topic_for=settings.topic,
        traceparent=None,
        logger=logging.getLogger("test"),
    )
    await spec.fn(event, ctx)
    (out,) = ctx.outgoing
    assert out.topic == "t-load.response_ready"
    assert out.key == "conv-1"
    assert out.event["text"] == "echo: ping"
    assert out.event["reply_to"] == reply_to
    assert out.event["in_reply_to"] == "m-1"
    assert out.event.metadata.causation_id == meta.event_id
    assert isinstance(out.event.metadata.event_id, uuid.UUID)


def test_built_in_factory_by_path(settings: Settings) -> None:
    service = load_service("pipeline.services.echo:build", settings)
    assert service.name == "echo"
    assert [h.event_type for h in service.handlers] == ["message_received"]


def test_service_instance_by_path(settings: Settings, custom_module: str) -> None:
    service = load_service(f"{custom_module}:INSTANCE", settings)
    assert service.name == "ready-made"
    assert [h.event_type for h in service.handlers] == ["tool_called"]


def test_factory_by_path_gets_the_settings(settings: Settings, custom_module: str) -> None:
    service = load_service(f"{custom_module}:factory", settings)
    assert service.name == "built"
    assert service.settings is settings
    assert [h.name for h in service.handlers] == ["on_timer"]


def test_unknown_name_lists_the_built_ins(settings: Settings) -> None:
    with pytest.raises(ConfigError, match=r"unknown service 'ecco': use one of .*echo") as info:
        load_service("ecco", settings)
    assert "module.path:name" in str(info.value)


def test_missing_module(settings: Settings) -> None:
    with pytest.raises(ConfigError, match="cannot import 'no_such_module_xyz'"):
        load_service("no_such_module_xyz:build", settings)


@pytest.mark.parametrize("attribute", ["NOT_A_SERVICE", "not_a_factory"])
def test_attribute_that_is_no_service(
    settings: Settings, custom_module: str, attribute: str
) -> None:
    with pytest.raises(ConfigError, match="is neither a service nor a factory returning one"):
        load_service(f"{custom_module}:{attribute}", settings)


def test_a_missing_attribute_is_named_with_what_was_meant(
    settings: Settings, custom_module: str
) -> None:
    with pytest.raises(ConfigError) as typo:
        load_service(f"{custom_module}:INSTANSE", settings)
    assert str(typo.value) == (
        f"module {custom_module!r} has no attribute 'INSTANSE' "
        f"(service '{custom_module}:INSTANSE'); did you mean 'INSTANCE'?"
    )
    with pytest.raises(ConfigError) as missing:
        load_service(f"{custom_module}:missing", settings)
    assert f"module {custom_module!r} has no attribute 'missing'" in str(missing.value)
    assert "its services: 'INSTANCE'" in str(missing.value)
