"""The agent service: conversation state, the LLM call, and the next step of each turn."""

from __future__ import annotations

from pipeline.services.agent.conversation import Conversation, Turn
from pipeline.services.agent.service import Agent, assemble, build

__all__ = ["Agent", "Conversation", "Turn", "assemble", "build"]
