"""Built-in services, by the name ``pipeline run`` knows them."""

from __future__ import annotations

import difflib
import importlib
import inspect
from collections.abc import Callable
from types import ModuleType
from typing import Any, Protocol, runtime_checkable

from pipeline.config import Settings
from pipeline.errors import ConfigError

BUILT_IN = {
    "echo": "pipeline.services.echo:build",
    "gateway": "pipeline.services.gateway:build",
    "agent": "pipeline.services.agent:build",
    "tools": "pipeline.services.tools:build",
    "delivery": "pipeline.services.delivery:build",
    "scheduler": "pipeline.services.scheduler:build",
    "webhooks": "pipeline.services.webhooks:build",
    "console": "pipeline.services.console:build",
}


@runtime_checkable
class Runnable(Protocol):
    """Anything ``pipeline run`` can run: a Service, or the gateway's HTTP server."""

    name: str

    def run_forever(self) -> int: ...


def load_service(spec: str, settings: Settings, **options: Any) -> Runnable:
    """A built-in name, or ``module.path:attribute`` naming a service or a factory.

    A factory is called with the settings and must return a service; of ``options``, those
    its signature names are passed too (``tools`` for an agent, in an evaluation).
    """
    target = BUILT_IN.get(spec, spec)
    module_name, _, attribute = target.partition(":")
    if not attribute:
        known = ", ".join(sorted(BUILT_IN))
        raise ConfigError(f"unknown service {spec!r}: use one of {known} or module.path:name")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"cannot import {module_name!r} for service {spec!r}: {exc}") from exc
    if not hasattr(module, attribute):
        raise ConfigError(_missing_attribute(spec, module, attribute))
    obj = getattr(module, attribute)
    if isinstance(obj, Runnable):
        return obj
    if callable(obj):
        factory: Callable[..., object] = obj
        built = factory(settings, **_accepted(factory, options))
        if isinstance(built, Runnable):
            return built
    raise ConfigError(f"{target} is neither a service nor a factory returning one")


def _missing_attribute(spec: str, module: ModuleType, attribute: str) -> str:
    """Says which attribute a module lacks, and the names it has that could be meant."""
    names = [name for name in vars(module) if not name.startswith("_")]
    services = [name for name in names if isinstance(getattr(module, name), Runnable)]
    close = difflib.get_close_matches(attribute, names, n=3)
    message = f"module {module.__name__!r} has no attribute {attribute!r} (service {spec!r})"
    if close:
        message += f"; did you mean {' or '.join(repr(name) for name in close)}?"
    elif services:
        message += f"; its services: {', '.join(repr(name) for name in services)}"
    return message


def _accepted(factory: Callable[..., object], options: dict[str, Any]) -> dict[str, Any]:
    """The ``options`` that ``factory`` takes by name."""
    if not options:
        return {}
    try:
        parameters = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return {}
    return {name: value for name, value in options.items() if name in parameters}
