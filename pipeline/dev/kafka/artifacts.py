"""The broker jars: fetched once from Maven Central with ``mvn``, then cached.

They land in ``<cache root>/<version>/libs``; the cache root is ``.cache/kafka`` in the
repository, or ``$PIPELINE_DEVKAFKA_CACHE``. :func:`find_tool` locates ``mvn`` and
``java`` (``$MAVEN_HOME``/``$JAVA_HOME`` first, then the ``PATH``).
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
from pathlib import Path

from pipeline.errors import DevKafkaError

__all__ = [
    "CACHE_ENV",
    "KAFKA_VERSION",
    "SCALA_VERSION",
    "SLF4J_BINDING",
    "cache_root",
    "fetch",
    "find_tool",
    "render_pom",
]

KAFKA_VERSION = "4.1.1"
SCALA_VERSION = "2.13"
# Kafka 4.1 brings slf4j-api 1.7.36 and log4j-core 2.24.3; log4j-slf4j-impl is the
# binding for slf4j 1.7 (log4j-slf4j2-impl would be the one for slf4j 2.x).
SLF4J_BINDING = ("org.apache.logging.log4j", "log4j-slf4j-impl", "2.24.3")
CACHE_ENV = "PIPELINE_DEVKAFKA_CACHE"
_MARKER = ".fetched"


def cache_root() -> Path:
    """``$PIPELINE_DEVKAFKA_CACHE``, else ``.cache/kafka`` in the repository (else the cwd)."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser().resolve()
    repo = Path(__file__).resolve().parents[3]  # pipeline/dev/kafka/artifacts.py
    base = repo if (repo / "pyproject.toml").is_file() else Path.cwd()
    return base / ".cache" / "kafka"


def render_pom(kafka_version: str = KAFKA_VERSION) -> str:
    """A throwaway pom whose runtime dependencies are the broker, Kafka's command-line
    tools and the log binding."""
    deps = [
        ("org.apache.kafka", f"kafka_{SCALA_VERSION}", kafka_version),
        # Kafka's own command-line tools (kafka-consumer-groups, kafka-transactions).
        ("org.apache.kafka", "kafka-tools", kafka_version),
        SLF4J_BINDING,
    ]
    dep_xml = "\n".join(
        f"    <dependency><groupId>{g}</groupId><artifactId>{a}</artifactId>"
        f"<version>{v}</version></dependency>"
        for g, a, v in deps
    )
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local.pipeline</groupId>
  <artifactId>devkafka</artifactId>
  <version>{kafka_version}</version>
  <packaging>pom</packaging>
  <dependencies>
{dep_xml}
  </dependencies>
</project>
"""


def find_tool(name: str, env_home: str | None = None) -> str:
    """The path of ``name``: ``$<env_home>/bin/<name>`` when that exists, else from PATH."""
    if env_home and os.environ.get(env_home):
        candidate = Path(os.environ[env_home]) / "bin" / name
        if candidate.is_file():
            return str(candidate)
    found = shutil.which(name)
    if found is None:
        raise DevKafkaError(f"`{name}` is not on PATH; install it (Java 17+ and Maven are needed)")
    return found


def fetch(kafka_version: str = KAFKA_VERSION, root: Path | None = None) -> Path:
    """Download the broker jars with Maven unless they are cached; return the libs folder."""
    home = (root or cache_root()) / kafka_version
    libs = home / "libs"
    if _complete(home, libs, kafka_version):
        return libs
    home.mkdir(parents=True, exist_ok=True)
    with (home / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process may be fetching the same version
        if _complete(home, libs, kafka_version):
            return libs
        staging = home / "libs.partial"
        shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(libs, ignore_errors=True)
        (home / "pom.xml").write_text(render_pom(kafka_version), encoding="utf-8")
        cmd = [
            find_tool("mvn", "MAVEN_HOME"),
            "-q",
            "-B",
            "-Dstyle.color=never",
            "-f",
            str(home / "pom.xml"),
            "dependency:copy-dependencies",
            "-DincludeScope=runtime",
            f"-DoutputDirectory={staging}",
        ]
        result = subprocess.run(cmd, capture_output=True, text=True, check=False)
        jars = sorted(p.name for p in staging.glob("*.jar")) if staging.is_dir() else []
        if result.returncode != 0 or not any(j.startswith("kafka_") for j in jars):
            output = "\n".join((result.stdout + result.stderr).splitlines()[-30:])
            raise DevKafkaError(
                f"fetching Kafka {kafka_version} with Maven failed "
                f"(exit {result.returncode}); is Maven Central reachable?\n{output}"
            )
        staging.rename(libs)
        (home / _MARKER).write_text("\n".join(jars) + "\n", encoding="utf-8")
    return libs


def _complete(home: Path, libs: Path, kafka_version: str) -> bool:
    """A finished fetch of every artifact the pom names now (a cache from before the
    tools were added is fetched again)."""
    tools = libs / f"kafka-tools-{kafka_version}.jar"
    return (home / _MARKER).is_file() and tools.is_file()
