"""The tools service: tool_called -> run the tool from the registry -> tool_result.

Its tools are the built-ins, the entry-point plugins ``PIPELINE_TOOLS__PLUGINS`` allows,
and the tools of the MCP servers in ``PIPELINE_TOOLS__MCP_SERVERS`` (connected at start,
kept connected by :mod:`pipeline.toolbox.mcp`). It advertises them on the tool catalog
topic (:mod:`pipeline.toolbox.advertiser`), which is what the agent offers the model,
and answers the calls for the tools the catalog says it serves.

Each call runs with a deadline (the call's ``timeout_ms``, capped by the settings) and
under a concurrency limit. Whatever happens (unknown tool, bad arguments, an exception,
the deadline) becomes a tool_result with status ``error`` or ``timeout``: a failing tool
never fails the handler, so it is never retried or dead-lettered.

Each call runs with a :class:`~pipeline.toolbox.ToolContext` built from its tool_called
event: the model's ``call_id``, an idempotency key derived from the event's id (the same
every time the event is handled again, different for every call), the conversation and
tenant, and ``attempt`` 1. A tool that asks for the context receives it; a ``keyed`` tool
passes the key on to the system it changes (MCP tools get it in the request's ``_meta``,
HTTP tools in the ``Idempotency-Key`` header), so a call run again after a crash is
recognised there. Every tool declares such a guarantee (:mod:`pipeline.toolbox.guarantee`),
and the catalog advertises it. The handler builds the context, runs the call
(:class:`ToolOutcome`) and emits the result, three steps a journal of calls can wrap.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from prometheus_client import Counter, Histogram

from pipeline.config import Settings
from pipeline.events.model import Event
from pipeline.journal import DECIDED, DONE, UNKNOWN, Journal, step_id
from pipeline.observability.metrics import LATENCY_BUCKETS
from pipeline.runtime.context import Context
from pipeline.runtime.publisher import Publisher
from pipeline.runtime.service import Background, Service
from pipeline.runtime.spans import failed, span
from pipeline.toolbox import ToolContext, ToolError, ToolRegistry, build_registry
from pipeline.toolbox.advertiser import Advertiser
from pipeline.toolbox.catalog import CatalogFollower
from pipeline.toolbox.guarantee import AT_MOST_ONCE, IDEMPOTENT
from pipeline.toolbox.mcp import McpServer, mcp_servers
from pipeline.toolbox.registry import Tool

log = logging.getLogger(__name__)

UNKNOWN_TOOL_LABEL = "unknown"
TOOL = "tool"  # the journal's kind of step for a tool call
UNKNOWN_STATUS = "unknown"  # a tool_result's status when the outcome is not known


class ToolRunner:
    """Runs one call of a registry's tool under a deadline and a concurrency limit."""

    def __init__(
        self,
        registry: ToolRegistry,
        *,
        max_concurrency: int,
        default_timeout: float,
        max_timeout: float,
        why_missing: Callable[[str], str | None] = lambda name: None,
    ) -> None:
        self.registry = registry
        self.why_missing = why_missing
        self.default_timeout = default_timeout
        self.max_timeout = max_timeout
        self._slots = asyncio.Semaphore(max_concurrency)

    def timeout_for(self, timeout_ms: int | None) -> float:
        seconds = timeout_ms / 1000 if timeout_ms and timeout_ms > 0 else self.default_timeout
        return min(seconds, self.max_timeout)

    async def run(
        self,
        name: str,
        arguments_json: str,
        timeout_ms: int | None,
        context: ToolContext | None = None,
    ) -> tuple[str, Any, str | None]:
        """(status, result, error): status is ok, error or timeout.

        ``context`` is the call's, passed to a tool that asks for it (a standalone one,
        with a key of its own, when None).
        """
        found = self.registry.get(name)
        if found is None:
            why = self.why_missing(name)
            if why is not None:
                return "error", None, f"the tool {name!r} is not available now: {why}"
            return "error", None, f"unknown tool {name!r}; available: {self.registry.names}"
        try:
            arguments = json.loads(arguments_json or "{}")
        except ValueError as exc:
            return "error", None, f"arguments are not valid JSON: {exc}"
        if not isinstance(arguments, Mapping):
            return "error", None, "arguments must be a JSON object"
        timeout = self.timeout_for(timeout_ms)
        async with self._slots:
            try:
                result = await asyncio.wait_for(found(arguments, context), timeout)
            except TimeoutError:
                return "timeout", None, f"{name} did not finish within {timeout:g}s"
            except ToolError as exc:
                return "error", None, str(exc)
            except Exception as exc:
                log.warning("tool %s failed: %r", name, exc, exc_info=True)
                return "error", None, f"{name} failed: {type(exc).__name__}: {exc}"
        return "ok", result, None


class CallJournal:
    """Keyed and at-most-once calls through the journal: the intent recorded before the
    tool runs, the outcome after; a call found recorded is answered from the record."""

    def __init__(self, journal: Journal) -> None:
        self.journal = journal

    async def run(
        self,
        event: Event,
        ctx: Context,
        guarantee: str,
        run: Callable[[ToolContext], Awaitable[ToolOutcome]],
    ) -> tuple[ToolOutcome, ToolContext]:
        journal = self.journal
        sid = step_id(event.id, TOOL)
        known = journal.find(ctx, sid)
        attempt = 1
        if known is not None:
            call = ToolContext.for_call(event, attempt=known.attempt)
            if known.state in (DONE, DECIDED, UNKNOWN) and known.result is not None:
                journal.count(TOOL, "reused")
                return ToolOutcome.from_json(known.result), call
            # An intent and no outcome: the tool may or may not have run.
            if guarantee == AT_MOST_ONCE:
                reason = (
                    f"outcome unknown: {call.tool} was started (attempt {known.attempt}) and "
                    "no result was recorded before the tools service stopped; it is not run "
                    "again because it runs at most once. An operator will check."
                )
                outcome = ToolOutcome(UNKNOWN_STATUS, None, reason, 0)
                recorded = {**outcome.as_json(), "call_id": call.call_id}
                await journal.unknown(
                    ctx, known.moved(known.state, known.at_ms, result=recorded), reason
                )
                journal.count(TOOL, "unknown")
                log.warning("%s call %s: %s", call.tool, call.call_id, reason)
                return outcome, call
            attempt = known.attempt + 1  # keyed: again, with the same key
        call = ToolContext.for_call(event, attempt=attempt)
        step = await journal.intent(ctx, sid, TOOL, key=call.idempotency_key, attempt=attempt)
        outcome = await run(call)
        await journal.done(ctx, step, {**outcome.as_json(), "call_id": call.call_id})
        journal.count(TOOL, "called" if attempt == 1 else "repeated")
        return outcome, call

    async def decided(self, event: Event, ctx: Context) -> None:
        """An operator said how a call whose outcome was unknown ended: record it, so the
        call arriving again is answered with the decision."""
        journal = self.journal
        for step in journal.steps(ctx.partition, event.conversation_id):
            if step.kind != TOOL or step.state != UNKNOWN or step.result is None:
                continue
            if step.result.get("call_id") != event["call_id"]:
                continue
            operator = event["operator_id"]
            if event["outcome"] == "done":
                outcome = ToolOutcome(
                    "ok", event.get("result_json") or json.dumps({"done": True}), None, 0
                )
            else:
                note = event.get("note") or "no note"
                outcome = ToolOutcome("error", None, f"failed, as {operator} found: {note}", 0)
            await journal.decided(ctx, step, {**outcome.as_json(), "call_id": event["call_id"]})
            journal.count(TOOL, "decided")
            return
        log.info("no unknown call %s recorded here to decide", event["call_id"])


@dataclass(frozen=True, slots=True)
class ToolOutcome:
    """How one call ended, as its tool_result tells it (what a journal records)."""

    status: str  # ok, error or timeout
    result_json: str | None
    error: str | None
    duration_ms: int

    def as_json(self) -> dict[str, Any]:
        """What the journal records of it."""
        return {
            "status": self.status,
            "result_json": self.result_json,
            "error": self.error,
            "duration_ms": self.duration_ms,
        }

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> ToolOutcome:
        return cls(
            str(value["status"]),
            value.get("result_json"),
            value.get("error"),
            int(value.get("duration_ms") or 0),
        )

    def tool_result(self, call: ToolContext) -> dict[str, Any]:
        """The fields of the call's tool_result event."""
        return {
            "call_id": call.call_id,
            "tool": call.tool,
            "status": self.status,
            "result_json": self.result_json,
            "error": self.error,
            "duration_ms": self.duration_ms,
        }


def build(settings: Settings | None = None, *, registry: ToolRegistry | None = None) -> Service:
    """The ``tools`` service; ``registry`` replaces the one built from the settings."""
    # Range assignment: partition N of tool_called and of tool_outcome_decided on the same
    # instance, the one that owns partition N of the journal.
    service = Service(
        "tools", settings=settings, emits=["tool_result"], assignment_strategy="range"
    )
    tools_settings = service.settings.tools
    tools = registry if registry is not None else build_registry(tools_settings)
    follower = CatalogFollower(service.settings)
    advertiser = Advertiser(service.name, tools, follower, enabled=tools_settings.enabled)
    runner = ToolRunner(
        tools,
        max_concurrency=tools_settings.max_concurrency,
        default_timeout=tools_settings.timeout_seconds,
        max_timeout=tools_settings.max_timeout_seconds,
        why_missing=advertiser.why_missing,
    )

    def mcp_tools_changed(server: McpServer, listed: list[Tool]) -> None:
        why = f"the MCP server {server.name!r} is not connected ({server.last_error})"
        advertiser.replace_source(server.source, listed, why)

    service.background(advertiser.run)
    for server in mcp_servers(tools_settings, mcp_tools_changed):
        advertiser.expect_source(server.source)
        service.background(_keep_connected(server))
    # A connection attempt lists too: initialize and list, each under the connect deadline.
    first_report_wait = 2 * tools_settings.mcp_connect_timeout_seconds + 5
    duration = Histogram(
        "pipeline_tool_duration_seconds",
        "Time one tool call took, by tool.",
        ["service", "tool"],
        buckets=LATENCY_BUCKETS,
        registry=service.registry,
    )
    calls = Counter(
        "pipeline_tool_calls_total",
        "Tool calls, by tool and status (ok, error or timeout).",
        ["service", "tool", "status"],
        registry=service.registry,
    )
    log.info("tools offered: %s", ", ".join(tools.names) or "none")

    async def run_call(event: Event, call: ToolContext) -> ToolOutcome:
        """Run the call ``event`` asks for, traced and measured; never raises."""
        name = call.tool
        started = time.perf_counter()
        attributes = {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": name}
        with span(f"execute_tool {name}", attributes) as tool_span:
            status, result, error = await runner.run(
                name, event["arguments_json"], event.get("timeout_ms"), call
            )
            if status != "ok":
                failed(tool_span, error)
        result_json = None
        if status == "ok":
            try:
                result_json = json.dumps(result, ensure_ascii=False, allow_nan=False)
            except (TypeError, ValueError) as exc:
                status, error = "error", f"{name} returned a result JSON cannot encode: {exc}"
        elapsed = time.perf_counter() - started
        label = name if name in tools else UNKNOWN_TOOL_LABEL
        duration.labels(service.name, label).observe(elapsed)
        calls.labels(service.name, label, status).inc()
        return ToolOutcome(status, result_json, error, int(elapsed * 1000))

    journal = Journal(
        service,
        tools_settings.journal_topic,
        keep=tools_settings.journal_keep,
        expire_committed=False,  # a tool_called may arrive again long after (same id)
    )
    calls_journal = CallJournal(journal)

    @service.handler("tool_called")
    async def run_tool(event: Event, ctx: Context) -> None:
        name = str(event["tool"])
        await follower.loaded.wait()  # the catalog says which service answers which tool
        if not advertiser.serves(name):
            return  # another tools service advertises it and answers
        awaited = advertiser.awaited_source(name)
        if awaited is not None and not await advertiser.settled(awaited, first_report_wait):
            log.warning("%s has not reported its tools yet; answering %s without it", awaited, name)
        found = tools.get(name)
        if found is None or found.guarantee == IDEMPOTENT:
            # Running it again is harmless (or it does not exist): nothing to record.
            call = ToolContext.for_call(event)
            outcome = await run_call(event, call)
        else:
            outcome, call = await calls_journal.run(
                event, ctx, found.guarantee, lambda call: run_call(event, call)
            )
        ctx.emit("tool_result", outcome.tool_result(call))

    @service.handler("tool_outcome_decided")
    async def record_decision(event: Event, ctx: Context) -> None:
        await calls_journal.decided(event, ctx)

    return service


def _keep_connected(server: McpServer) -> Background:
    async def keep_connected(_: Publisher) -> None:
        await server.run()

    return keep_connected
