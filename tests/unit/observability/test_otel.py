"""Tracing is configured by the standard OTEL_* variables and is off without them: no
SDK, no provider, no exporter, and today's traceparent headers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from pipeline.errors import ConfigError
from pipeline.observability import otel

CLEAN_ENV = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}

# One echo turn through pipeline.testing after the process set itself up as a service
# does; prints what was created and the headers of the turn.
TURN = textwrap.dedent(
    """
    import asyncio, json, sys
    from opentelemetry import trace
    from pipeline.observability import otel
    from pipeline.observability.tracing import event_traceparent, parent_trace
    from pipeline.services.echo import build
    from pipeline.testing import TestService

    async def turn():
        async with TestService(build()) as svc:
            await svc.send("message_received", {
                "channel": "web", "sender_id": "u", "text": "hi",
                "reply_to": {"channel": "web", "address": "http://x/cb", "thread_id": None},
            })
            reply = await svc.next_output("response_ready")
            [incoming] = svc.broker.records("message_received")
            [outgoing] = svc.broker.records("response_ready")
        return reply, dict(incoming.headers()), dict(outgoing.headers())

    otel.start_observability("echo", "WARNING", "text")
    reply, incoming, outgoing = asyncio.run(turn())
    expected = event_traceparent(
        parent_trace(incoming["traceparent"]), reply.metadata.event_id_text
    )
    report = {
        "sdk_imported": "opentelemetry.sdk" in sys.modules,
        "global_provider": type(trace.get_tracer_provider()).__name__,
        "provider": otel.OBSERVE.provider is not None,
        "tracing": otel.OBSERVE.tracing,
        "active": otel.OBSERVE.active,
        "todays_traceparent": outgoing["traceparent"].decode() == expected,
    }
    otel.stop_observability()
    print("REPORT " + json.dumps(report))
    """
)


def run_turn(**env: str) -> tuple[dict[str, object], str]:
    done = subprocess.run(
        [sys.executable, "-c", TURN],
        env={**CLEAN_ENV, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    [line] = [ln for ln in done.stdout.splitlines() if ln.startswith("REPORT ")]
    return json.loads(line.removeprefix("REPORT ")), done.stdout


def test_with_otel_variables_unset_nothing_is_created_and_headers_are_unchanged() -> None:
    report, _ = run_turn()
    assert report == {
        "sdk_imported": False,
        "global_provider": "ProxyTracerProvider",
        "provider": False,
        "tracing": False,
        "active": False,
        "todays_traceparent": True,
    }


def test_the_console_exporter_writes_the_spans_of_a_turn() -> None:
    report, stdout = run_turn(OTEL_TRACES_EXPORTER="console")
    assert report["sdk_imported"] and report["tracing"] and report["provider"]
    assert report["global_provider"] == "TracerProvider"
    assert not report["todays_traceparent"]  # the output names its send span instead
    assert '"name": "process message_received"' in stdout
    assert '"name": "send response_ready"' in stdout
    assert '"service.name": "echo"' in stdout


@pytest.mark.parametrize(
    ("environ", "names"),
    [
        ({}, []),
        ({"OTEL_SERVICE_NAME": "agent"}, []),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, ["otlp"]),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/v1/traces"}, ["otlp"]),
        ({"OTEL_TRACES_EXPORTER": "console, otlp"}, ["console", "otlp"]),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c"}, []),
        ({"OTEL_TRACES_EXPORTER": "console", "OTEL_SDK_DISABLED": "true"}, []),
    ],
)
def test_exporters_named_by_the_variables(environ: dict[str, str], names: list[str]) -> None:
    assert otel.exporter_names(environ) == names


def test_otlp_is_the_http_exporter_unless_grpc_is_asked_for() -> None:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    exporter = otel.span_exporter("otlp", {})
    try:
        assert isinstance(exporter, OTLPSpanExporter)
    finally:
        exporter.shutdown()
    with pytest.raises(ConfigError, match="otlp_proto_grpc"):
        otel.span_exporter("otlp", {"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"})


def test_an_exporter_that_is_not_installed_is_refused_and_nothing_is_installed() -> None:
    with pytest.raises(ConfigError, match=r"'zipkin'.*installed: .*console"):
        otel.configure_tracing("echo", {"OTEL_TRACES_EXPORTER": "zipkin"})
    assert otel.OBSERVE.provider is None and not otel.OBSERVE.tracing
    assert otel.configure_tracing("echo", {}) is None
    assert otel.OBSERVE.provider is None and not otel.OBSERVE.active


def test_a_service_with_an_unknown_exporter_does_not_start() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pipeline", "run", "echo"],
        env={**CLEAN_ENV, "OTEL_TRACES_EXPORTER": "zipkin", "PIPELINE_METRICS_PORT": "0"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert "cannot start" in done.stderr and "zipkin" in done.stderr
