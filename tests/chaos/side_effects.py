"""The side effects of the chaos runs' tools: one line per execution in a shared ledger.

The refund tools of :mod:`tests.chaos.actions_app` and of the MCP server
:mod:`tests.chaos.mcp_refund_server` append one JSON line per execution to the file named
by :data:`LEDGER_ENV`: the tool, the conversation and order it refunds, the call id and
idempotency key when the caller gave them, the attempt, the process and the time. A tool
that deduplicates by key (as a payment API does) looks the key up in the same file under
an exclusive lock first: a second execution with a key that already took effect is
written too, marked ``deduplicated``, and changes nothing. The ledger lives outside the
processes the harness kills, so it remembers across their restarts, as a payment
provider would.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

LEDGER_ENV = "CHAOS_TOOL_LEDGER"
LATENCY_ENV = "CHAOS_TOOL_LATENCY_SECONDS"


@dataclass(frozen=True, slots=True)
class Execution:
    """One execution of a tool, as the ledger holds it."""

    tool: str
    conversation: str
    order_id: str
    call_id: str | None
    key: str | None
    attempt: int | None
    deduplicated: bool
    pid: int
    at: float  # wall-clock seconds


def record_execution(
    ledger: Path,
    tool: str,
    arguments: Mapping[str, Any],
    *,
    call_id: str | None = None,
    key: str | None = None,
    attempt: int | None = None,
    deduplicate: bool = False,
) -> bool:
    """Append one execution of ``tool``; True when it took effect.

    With ``deduplicate`` and a ``key``, an execution whose key already took effect for
    ``tool`` is written marked ``deduplicated`` and returns False.
    """
    with ledger.open("a+", encoding="utf-8") as file:
        fcntl.flock(file, fcntl.LOCK_EX)
        deduplicated = False
        if deduplicate and key is not None:
            file.seek(0)
            deduplicated = any(
                e.tool == tool and e.key == key and not e.deduplicated for e in _parse(file.read())
            )
        line = {
            "tool": tool,
            "conversation": str(arguments.get("conversation", "")),
            "order_id": str(arguments.get("order_id", "")),
            "call_id": call_id,
            "key": key,
            "attempt": attempt,
            "deduplicated": deduplicated,
            "pid": os.getpid(),
            "at": time.time(),
        }
        file.write(json.dumps(line) + "\n")
        file.flush()
    return not deduplicated


def read_ledger(ledger: Path) -> list[Execution]:
    """Every execution the ledger holds, in the order written (none when it is missing)."""
    if not ledger.exists():
        return []
    return _parse(ledger.read_text(encoding="utf-8"))


def _parse(text: str) -> list[Execution]:
    executions = []
    for line in text.splitlines():
        # A process killed in the middle of a write leaves a broken last line at most.
        with contextlib.suppress(ValueError, KeyError, TypeError):
            raw = json.loads(line)
            executions.append(
                Execution(
                    str(raw["tool"]),
                    str(raw["conversation"]),
                    str(raw["order_id"]),
                    raw["call_id"],
                    raw["key"],
                    raw["attempt"],
                    bool(raw["deduplicated"]),
                    int(raw["pid"]),
                    float(raw["at"]),
                )
            )
    return executions


def ledger_from_environment() -> Path:
    """The ledger the harness named in :data:`LEDGER_ENV`."""
    path = os.environ.get(LEDGER_ENV)
    if not path:
        raise RuntimeError(f"{LEDGER_ENV} must name the file the tools write their effects to")
    return Path(path)


def latency_from_environment() -> float:
    """How long one execution takes (:data:`LATENCY_ENV`, default 0.05 s)."""
    return float(os.environ.get(LATENCY_ENV, "0.05"))
