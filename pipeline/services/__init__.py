"""Built-in services, by the name ``pipeline run`` knows them."""

from __future__ import annotations

import importlib
from collections.abc import Callable

from pipeline.config import Settings
from pipeline.errors import ConfigError
from pipeline.runtime.service import Service

BUILT_IN = {"echo": "pipeline.services.echo:build"}


def load_service(spec: str, settings: Settings) -> Service:
    """A built-in name, or ``module.path:attribute`` naming a Service or a factory.

    A factory is called with the settings and must return a Service.
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
    obj = getattr(module, attribute, None)
    if isinstance(obj, Service):
        return obj
    if callable(obj):
        factory: Callable[[Settings], object] = obj
        built = factory(settings)
        if isinstance(built, Service):
            return built
    raise ConfigError(f"{target} is neither a Service nor a factory returning one")
