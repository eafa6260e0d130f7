"""The one place a serde is made: the wire format setting picks the framing.

``single-object`` (the default): Avro single-object encoding, no registry.
``confluent``: the Confluent wire format with the schema registry of
``settings.schema_registry``; the catalog's schemas are registered when the serde is made.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pipeline.config import Settings
from pipeline.errors import ConfigError
from pipeline.events.catalog import SchemaCatalog, load_settings_catalog
from pipeline.events.serde import SingleObjectSerde

if TYPE_CHECKING:  # the registry client is imported only in confluent mode
    from confluent_kafka.schema_registry import SchemaRegistryClient

__all__ = ["make_serde", "registry_client", "registry_client_config"]


def make_serde(
    settings: Settings, catalog: SchemaCatalog | None = None, *, register: bool = True
) -> SingleObjectSerde:
    """The serde ``settings`` ask for, over ``catalog`` (default: the settings' catalog).

    In confluent mode ``register`` registers every schema at once, so that a registry that
    refuses a schema (an incompatible change) or cannot be reached stops the start, not
    the first event.
    """
    catalog = catalog if catalog is not None else load_settings_catalog(settings)
    if settings.wire_format == "single-object":
        return SingleObjectSerde(catalog)
    from pipeline.events.registry_serde import ConfluentSerde, subjects_for

    serde = ConfluentSerde(
        catalog,
        registry_client(settings),
        subjects_for(catalog, settings.topic, settings.dead_letter_topic),
        unreachable_backoff=settings.schema_registry.unreachable_backoff_seconds,
    )
    if register:
        serde.register()
    return serde


def registry_client_config(settings: Settings) -> dict[str, Any]:
    """confluent-kafka SchemaRegistryClient settings (with the secret: never log them)."""
    registry = settings.schema_registry
    if not registry.url:
        raise ConfigError("no schema registry configured: set PIPELINE_SCHEMA_REGISTRY__URL")
    config: dict[str, Any] = {
        "url": registry.url,
        "timeout": registry.timeout_seconds,
        # One quick retry: a reader waits on a lookup, and a failure dead-letters the record.
        "max.retries": 1,
        "retries.wait.ms": 200,
        "retries.max.wait.ms": 1000,
    }
    if registry.username is not None:
        password = registry.password.get_secret_value() if registry.password else ""
        config["basic.auth.user.info"] = f"{registry.username}:{password}"
    return config


def registry_client(settings: Settings) -> SchemaRegistryClient:
    from confluent_kafka.schema_registry import SchemaRegistryClient

    return SchemaRegistryClient(registry_client_config(settings))
