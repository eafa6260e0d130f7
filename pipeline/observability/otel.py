"""OpenTelemetry tracing of a process, off unless the standard ``OTEL_*`` variables ask.

Tracing is on when ``OTEL_TRACES_EXPORTER`` names exporters (comma-separated, not
``none``) or an OTLP endpoint is set (``OTEL_EXPORTER_OTLP_ENDPOINT``,
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``; the exporter is then ``otlp``);
``OTEL_SDK_DISABLED=true`` turns it off. When it is off the SDK is not even imported:
there is no tracer provider and no exporter, and each hook of the runtime costs one
attribute read (:data:`OBSERVE`).

When it is on, the process has one SDK ``TracerProvider`` (also the global one): its
resource from ``OTEL_SERVICE_NAME`` (default: the service's name) and
``OTEL_RESOURCE_ATTRIBUTES``, its sampler from ``OTEL_TRACES_SAMPLER``, each exporter
behind a batch processor (``OTEL_BSP_*``). Exporters are found by name as the SDK finds
them (the ``opentelemetry_traces_exporter`` entry points): ``console`` comes with the
SDK, ``otlp`` (HTTP/protobuf, or gRPC with ``OTEL_EXPORTER_OTLP_PROTOCOL=grpc``) with
the ``otel`` extra. The spans themselves are made in :mod:`pipeline.runtime.spans`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any

from opentelemetry import trace

from pipeline.errors import ConfigError
from pipeline.observability.logs import LogFormat, configure_logging

if TYPE_CHECKING:
    from opentelemetry.sdk.trace.export import SpanExporter

INSTRUMENTATION = "kafka-agent-pipeline"
EXPORTER_GROUP = "opentelemetry_traces_exporter"
ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")


class Observe:
    """What the runtime's hooks do. ``active`` is the one flag read per record: it is
    False unless spans are made (``tracing``) or JSON log lines want the handler's
    context (``log_context``)."""

    __slots__ = ("active", "log_context", "provider", "tracer", "tracing")

    def __init__(self) -> None:
        self.tracing = False
        self.log_context = False
        self.active = False
        self.tracer: trace.Tracer = trace.NoOpTracer()
        self.provider: trace.TracerProvider | None = None

    def update(self) -> None:
        self.active = self.tracing or self.log_context


OBSERVE = Observe()


def exporter_names(environ: Mapping[str, str]) -> list[str]:
    """The span exporters the ``OTEL_*`` variables ask for; empty when tracing is off."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return []
    listed = environ.get("OTEL_TRACES_EXPORTER", "")
    names = [name.strip().lower() for name in listed.split(",") if name.strip()]
    if "none" in names:
        return []
    if not names and any(environ.get(v, "").strip() for v in ENDPOINT_VARIABLES):
        return ["otlp"]
    return names


def configure_tracing(
    service_name: str, environ: Mapping[str, str] | None = None
) -> trace.TracerProvider | None:
    """Create and install the tracer provider the ``OTEL_*`` variables describe, or
    nothing (None) when they ask for no exporter.

    Raises ConfigError for an exporter that is not installed.
    """
    environ = os.environ if environ is None else environ
    names = exporter_names(environ)
    if not names:
        return None
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    exporters = [span_exporter(name, environ) for name in names]
    named = {} if environ.get("OTEL_SERVICE_NAME") else {SERVICE_NAME: service_name}
    provider = TracerProvider(resource=Resource.create(named))
    for exporter in exporters:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    install(provider)
    return provider


def span_exporter(name: str, environ: Mapping[str, str]) -> SpanExporter:
    """The exporter ``name`` (an ``OTEL_TRACES_EXPORTER`` value), configured by the
    variables it reads itself; raises ConfigError when it is not installed."""
    if name == "otlp":
        protocol = environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or environ.get(
            "OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"
        )
        name = "otlp_proto_grpc" if protocol.strip() == "grpc" else "otlp_proto_http"
    found = entry_points(group=EXPORTER_GROUP, name=name)
    if not found:
        installed = sorted(ep.name for ep in entry_points(group=EXPORTER_GROUP))
        hint = " (pip install 'kafka-agent-pipeline[otel]')" if name.startswith("otlp") else ""
        raise ConfigError(
            f"the span exporter {name!r} that OTEL_TRACES_EXPORTER asks for is not "
            f"installed{hint}; installed: {', '.join(installed) or 'none'}"
        )
    exporter: SpanExporter = next(iter(found)).load()()
    return exporter


def install(provider: trace.TracerProvider) -> None:
    """Make spans with ``provider`` from now on (tests pass one with an in-memory
    exporter; the global provider is left alone)."""
    OBSERVE.provider = provider
    OBSERVE.tracer = provider.get_tracer(INSTRUMENTATION)
    OBSERVE.tracing = True
    OBSERVE.update()


def uninstall() -> None:
    """Make no spans any more (the provider is not shut down)."""
    OBSERVE.provider = None
    OBSERVE.tracer = trace.NoOpTracer()
    OBSERVE.tracing = False
    OBSERVE.update()


def start_observability(
    service_name: str, level: str, log_format: LogFormat, environ: Mapping[str, str] | None = None
) -> None:
    """Logging, then tracing, of a process that runs one service.

    Raises ConfigError for a span exporter that is not installed.
    """
    configure_logging(level, log_format)
    OBSERVE.log_context = log_format == "json"
    OBSERVE.update()
    configure_tracing(service_name, environ)


def stop_observability() -> None:
    """Export the spans still buffered and stop the exporters."""
    provider: Any = OBSERVE.provider
    uninstall()
    if provider is not None and hasattr(provider, "shutdown"):
        provider.shutdown()
