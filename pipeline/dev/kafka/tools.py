"""Kafka's own command-line tools, run from the cached jars (no Kafka distribution needed).

:func:`group_lag` is what ``kafka-consumer-groups.sh --describe`` prints: per partition,
the log end offset minus the group's committed offset. Failure tests read lag with it, so
the figure is Kafka's, not the project's.
"""

from __future__ import annotations

import subprocess

from pipeline.dev.kafka.artifacts import KAFKA_VERSION, fetch, find_tool
from pipeline.errors import DevKafkaError

__all__ = ["CONSUMER_GROUPS", "group_lag", "parse_group_description", "run_tool"]

CONSUMER_GROUPS = "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand"


def run_tool(
    main_class: str, args: list[str], *, timeout: float = 120.0, kafka_version: str = KAFKA_VERSION
) -> str:
    """Run one of Kafka's tools (its main class) with ``args``; its standard output."""
    libs = fetch(kafka_version)
    cmd = [find_tool("java", "JAVA_HOME"), "-Xmx256m", "-cp", f"{libs}/*", main_class, *args]
    try:
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise DevKafkaError(f"{main_class} did not finish within {timeout:g}s") from exc
    if result.returncode != 0:
        tail = "\n".join(result.stderr.strip().splitlines()[-5:])
        raise DevKafkaError(f"{main_class} exited with {result.returncode}: {tail}")
    return result.stdout


def group_lag(bootstrap_servers: str, group: str) -> dict[tuple[str, int], int | None]:
    """The group's lag per (topic, partition) as Kafka's consumer-groups tool describes it;
    None where the group has no committed offset (the tool prints ``-``)."""
    out = run_tool(
        CONSUMER_GROUPS, ["--bootstrap-server", bootstrap_servers, "--describe", "--group", group]
    )
    return parse_group_description(out, group)


def parse_group_description(out: str, group: str) -> dict[tuple[str, int], int | None]:
    """The LAG column of ``--describe``'s table, per (topic, partition)."""
    lag: dict[tuple[str, int], int | None] = {}
    columns: list[str] = []
    for line in out.splitlines():
        fields = line.split()
        if not fields:
            continue
        if fields[0] == "GROUP":
            columns = fields
            continue
        if not columns or len(fields) < len(columns) or fields[0] != group:
            continue
        row = dict(zip(columns, fields, strict=False))
        value = row["LAG"]
        lag[(row["TOPIC"], int(row["PARTITION"]))] = None if value == "-" else int(value)
    return lag
