"""An agent under ``pipeline.testing.TestService``, and the events its tests feed it."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from pipeline.config import Settings
from pipeline.events.model import Event
from pipeline.llm import ChatRequest, Completion, LLMProvider, ToolCall
from pipeline.runtime.service import Service
from pipeline.services.agent import Agent, assemble
from pipeline.testing import TestService
from pipeline.toolbox import builtin_tools
from pipeline.toolbox.tool_offer import StaticOffer

ADDRESS = {"channel": "web", "address": "https://example.com/cb", "thread_id": None}
TENANT = "t1"


class ScriptedProvider:
    """Returns the scripted completions in order (then ``fallback``), recording requests."""

    name = "scripted"
    model = "m"

    def __init__(self, *completions: Completion | Exception) -> None:
        self.completions = list(completions)
        self.requests: list[ChatRequest] = []

    async def complete(self, request: ChatRequest) -> Completion:
        self.requests.append(request)
        item = self.completions.pop(0) if self.completions else Completion(text="ok")
        if isinstance(item, Exception):
            raise item
        return item

    async def aclose(self) -> None:
        return None


def call(tool: str, call_id: str = "id-1", **arguments: Any) -> Completion:
    return Completion(tool_calls=(ToolCall(call_id, tool, arguments),))


def calls(*names: str) -> Completion:
    return Completion(tool_calls=tuple(ToolCall(f"id-{n}", n, {}) for n in names))


class AgentRun:
    """The agent service, its Agent, and the running TestService."""

    def __init__(self, service: Service, agent: Agent, svc: TestService) -> None:
        self.service, self.agent, self.svc = service, agent, svc

    async def user(self, text: str, conversation: str = "c1", tenant: str = TENANT) -> Event:
        body = {
            "channel": "web",
            "sender_id": "u1",
            "text": text,
            "reply_to": ADDRESS,
            "external_id": f"ext-{text[:20]}",
        }
        event = await self.svc.send(
            "message_received", body, conversation_id=conversation, tenant_id=tenant
        )
        await self.svc.settle()
        return event

    async def send(
        self, event_type: str, data: dict[str, Any], conversation: str = "c1", tenant: str = TENANT
    ) -> Event:
        event = await self.svc.send(
            event_type, data, conversation_id=conversation, tenant_id=tenant
        )
        await self.svc.settle()
        return event

    def outputs(self, event_type: str) -> list[Event]:
        return self.svc.outputs(event_type)

    def texts(self) -> list[str]:
        return [e["text"] for e in self.outputs("response_ready")]

    def state(self, conversation: str = "c1") -> dict[str, Any]:
        for partition in self.agent.store.partitions:
            value = self.agent.store.lookup(partition, conversation)
            if value is not None:
                return dict(value)
        raise AssertionError(f"no state for {conversation}")

    def metric(self, name: str, **labels: str) -> float:
        value = self.service.registry.get_sample_value(name, {"service": "agent", **labels})
        return 0.0 if value is None else value


@contextlib.asynccontextmanager
async def running_agent(
    provider: LLMProvider | None = None, **agent_settings: Any
) -> AsyncIterator[AgentRun]:
    settings = Settings(metrics_port=0, agent=agent_settings, max_retries=0)
    offer = StaticOffer.of(builtin_tools(settings.tools))
    service, agent = assemble(settings, provider=provider, tools=offer)
    async with TestService(service) as svc:
        yield AgentRun(service, agent, svc)
