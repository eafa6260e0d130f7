"""Where a service's CPU goes: py-spy samples of running processes, sorted into the costs
the performance page names (serde, produce/acks, HTTP, JSON, the event loop, metrics,
spans, state writes, ...).

The turn benchmark records each service during each rate with ``--profile DIR``
(``py-spy record --format raw --nonblocking``: samples are taken without stopping the
process, so what is measured keeps its pace); this module reads those files back::

    python benchmarks/cpu_profile.py DIR     # one table per recorded rate

A sample is put in the category of its innermost frame that matches one (so the cost of
encoding a record is "serde" wherever it is called from); the pipeline's own code that no
other category names is "runtime and handlers" (lanes, offsets, the handlers, the
gateway's parsing of a message), and what is left is "other libraries". uvloop's own
work (its C code: sockets, timers, callbacks) is sampled in the frame that started the
loop, so it counts as "event loop". py-spy counts only samples of
threads that run, not idle ones, so the shares are of the CPU the Python threads used;
librdkafka's own threads are not sampled (their CPU shows in the process's total).
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

# (category, pattern on one frame "function (file:line)"), tried on each frame from the
# innermost out; the first category with a matching frame takes the sample.
CATEGORIES: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (name, re.compile(pattern))
    for name, pattern in (
        ("serde (Avro)", r"fastavro|pipeline/events/(serde|wire|registry_serde)\.py"),
        ("spans and trace headers", r"opentelemetry|pipeline/runtime/spans\.py|tracing\.py"),
        ("metrics", r"prometheus_client|pipeline/observability/metrics\.py|/metrics\.py"),
        ("logging", r"[(/]logging/|pipeline/observability/logs\.py"),
        ("JSON", r"[(/]json/|orjson|pipeline/events/json(_body|able)\.py"),
        (
            "HTTP server (parse, route)",
            r"/h11/|uvicorn/|httptools|starlette/|fastapi/|pydantic|connection_limits\.py",
        ),
        ("HTTP client (model, callbacks)", r"aiohttp/|httpx|httpcore|anyio/|yarl|multidict"),
        (
            "produce and acks",
            r"confluent_kafka.*produce|\bproduce\b|producer\.py|publisher\.py|_serve_reports",
        ),
        ("poll and commit", r"kafka_thread\.py|committer\.py|consume \(|offset_tracker\.py"),
        ("state writes", r"pipeline/state/|sent_store\.py|sent_records\.py|journal/"),
        ("event model and ids", r"pipeline/events/model\.py|[(/]uuid\.py"),
        (
            "event loop",
            r"[(/]asyncio/|uvloop|[(/]selectors\.py|[(/]threading\.py|concurrent/futures",
        ),
        ("runtime and handlers", r"pipeline/"),
    )
)
OTHER = "other libraries"


def categorise_stack(frames: list[str]) -> str:
    """The category of one sample: ``frames`` from the outermost to the innermost."""
    for frame in reversed(frames):
        for name, pattern in CATEGORIES:
            if pattern.search(frame):
                return name
    return OTHER


def read_raw(path: Path) -> Counter[str]:
    """Samples per category in one ``py-spy record --format raw`` file."""
    counts: Counter[str] = Counter()
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = [f for f in stack.split(";") if not f.startswith(("process ", "thread "))]
        counts[categorise_stack(frames)] += int(count)
    return counts


class Recorder:
    """py-spy recording processes, one file each under ``directory``."""

    def __init__(self, directory: Path, rate: int = 97) -> None:
        self.directory = directory
        self.rate = rate
        self.executable = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
        self._running: list[subprocess.Popen[bytes]] = []
        directory.mkdir(parents=True, exist_ok=True)

    def record(self, name: str, pid: int, seconds: float) -> None:
        """Sample ``pid`` for ``seconds`` (without stopping it) into ``name``.txt."""
        self._running.append(
            subprocess.Popen(
                [
                    self.executable,
                    "record",
                    "--pid",
                    str(pid),
                    "--rate",
                    str(self.rate),
                    "--duration",
                    str(max(1, round(seconds))),
                    "--format",
                    "raw",
                    "--nonblocking",
                    "--output",
                    str(self.directory / f"{name}.txt"),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )

    def wait(self) -> None:
        for process in self._running:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
        self._running.clear()


def table(directory: Path, cpu_ms: dict[str, dict[str, float]] | None = None) -> str:
    """Markdown tables, one per recorded rate: each service's share of samples per category
    (with ``cpu_ms``, {file stem: CPU ms per turn}, the shares in ms per turn)."""
    files = sorted(directory.glob("*.txt"))
    by_rate: dict[str, dict[str, Counter[str]]] = {}
    for path in files:
        service, _, rate = path.stem.rpartition("@")
        by_rate.setdefault(rate, {})[service] = read_raw(path)
    names = [name for name, _ in CATEGORIES] + [OTHER]
    out: list[str] = []
    for rate, services in by_rate.items():
        columns = sorted(services)
        out += [f"### {rate}", "", "| cost | " + " | ".join(columns) + " |"]
        out.append("|---|" + "---|" * len(columns))
        for name in names:
            cells = []
            for service in columns:
                counts = services[service]
                share = counts[name] / max(1, sum(counts.values()))
                per_turn = (cpu_ms or {}).get(f"{service}@{rate}", {}).get("python")
                cells.append(
                    f"{share:.0%}" if per_turn is None else f"{share * per_turn:.2f} ({share:.0%})"
                )
            out.append(f"| {name} | " + " | ".join(cells) + " |")
        out.append("")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("directory", type=Path)
    args = parser.parse_args()
    print(table(args.directory))


if __name__ == "__main__":
    main()
