"""The Schema Registry client's settings."""

from __future__ import annotations

from pydantic import Field, SecretStr

from pipeline.config.sections._base import _Section


class SchemaRegistrySettings(_Section):
    """The schema registry of the ``confluent`` wire format (Confluent REST API)."""

    url: str | None = Field(
        None, description="Base URL of the registry (http://host:8081); required for confluent."
    )
    username: str | None = Field(None, description="HTTP basic auth user (API key).")
    password: SecretStr | None = Field(None, description="HTTP basic auth password (secret).")
    timeout_seconds: float = Field(5.0, gt=0, description="Timeout of one registry request.")
    unreachable_backoff_seconds: float = Field(
        10.0,
        ge=0,
        description="After the registry failed to answer, records with a schema id not yet "
        "cached are dead-lettered at once for this long instead of waiting again.",
    )
