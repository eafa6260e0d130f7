"""The librdkafka passthrough (``PIPELINE_KAFKA__*``, ``..._CONSUMER__*``, ``..._PRODUCER__*``)
checked by librdkafka itself, at start, so a mistake names its variable instead of ending
in a traceback from the first client built.

A client is built with the passthrough and no bootstrap servers: librdkafka validates
every property (names, values, combinations) without connecting anywhere.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from confluent_kafka import Consumer, KafkaException, Producer
from pydantic import SecretStr

_NO_SUCH_PROPERTY = re.compile(r'No such configuration property: "([^"]+)"')


class _Silent:
    """A logger for the throwaway clients: their warnings (no servers) mean nothing here."""

    def log(self, level: int, msg: str, *args: object) -> None:
        pass


def client_problems(
    kafka: Mapping[str, SecretStr],
    consumer: Mapping[str, SecretStr],
    producer: Mapping[str, SecretStr],
) -> list[str]:
    """One line per passthrough librdkafka refuses, naming the variables (never a value)."""
    problems = []
    checks: list[tuple[str, dict[str, str]]] = []
    if kafka or producer:
        checks.append(("producer", {**_reveal(kafka), **_reveal(producer)}))
    if kafka or consumer:
        checks.append(("consumer", {**_reveal(kafka), **_reveal(consumer)}))
    for kind, config in checks:
        sections = ("KAFKA", kind.upper())
        try:
            if kind == "producer":
                Producer({**config, "bootstrap.servers": "", "logger": _Silent()})
            else:
                Consumer(
                    {**config, "bootstrap.servers": "", "group.id": "check", "logger": _Silent()}
                )
        except KafkaException as exc:
            problems.append(_describe(exc, sections, kafka, consumer, producer))
    return list(dict.fromkeys(problems))


def _describe(
    exc: KafkaException,
    sections: tuple[str, str],
    kafka: Mapping[str, SecretStr],
    consumer: Mapping[str, SecretStr],
    producer: Mapping[str, SecretStr],
) -> str:
    error = exc.args[0] if exc.args else None
    message = error.str() if error is not None and hasattr(error, "str") else str(exc)
    unknown = _NO_SUCH_PROPERTY.search(message)
    if unknown:
        prop = unknown.group(1)
        where = {"KAFKA": kafka, "CONSUMER": consumer, "PRODUCER": producer}
        section = next((s for s in where if s in sections and prop in where[s]), sections[0])
        variable = f"PIPELINE_{section}__{prop.upper().replace('.', '_')}"
        return (
            f"{variable}: librdkafka has no setting {prop!r} (see librdkafka's "
            "CONFIGURATION.md for the names; '.' is written '_' in the variable)"
        )
    # librdkafka's messages name the property, not the value ("Invalid value for
    # configuration property ...").
    return f"PIPELINE_{sections[0]}__* / PIPELINE_{sections[1]}__*: librdkafka refuses: {message}"


def _reveal(secrets: Mapping[str, SecretStr]) -> dict[str, str]:
    return {k: v.get_secret_value() for k, v in secrets.items()}
