"""Web chat, inbound: a JSON message authenticated by the tenant's bearer token.

The tenant is the key of the token that matches. The conversation is the one the
client names, in its tenant's namespace (``web:<tenant>:<name>``; an id of another
tenant or channel is refused with 403, see :mod:`pipeline.channels.tenancy`), or one
per user (``web:<tenant>:<user_id>``). Answers go to the client's ``callback_url``; a
message without one is answered on the conversation's stream (``GET /v1/web/stream``),
which is what a browser reads.

A browser holds a chat token (:mod:`pipeline.channels.web.chat_token`) instead of the
tenant's token: its messages (:class:`ChatMessage`) carry only text, since the token
fixes the tenant, the user and the conversation.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from pipeline.channels.inbound import (
    Inbound,
    Parsed,
    bearer_tenant,
    json_object,
    stable_event_id,
    validate,
)
from pipeline.channels.tenancy import web_conversation
from pipeline.channels.web.chat_token import ChatScope
from pipeline.egress import CallbackUrl

Id = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=256)]


class WebMessage(BaseModel):
    """A message from a web chat client."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    conversation_id: Id | None = Field(
        None,
        description="Conversation to continue, a name in the tenant's namespace (stored as "
        "web:<tenant>:<name>; the full id is accepted too, another tenant's is refused with "
        "403); default one per user: web:<tenant>:<user>.",
    )
    user_id: Id = Field(description="The user's id in the client application.")
    text: str = Field(min_length=1, description="The message text.")
    callback_url: CallbackUrl | None = Field(
        None,
        description="Where the answer is POSTed; without it the answer goes to the "
        "conversation's stream (GET /v1/web/stream).",
    )
    message_id: Id | None = Field(
        None, description="Client's id of the message; a resend with the same id is a retry."
    )


class ChatMessage(BaseModel):
    """A message from the chat page, sent with a chat token (which names the user and
    the conversation)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    text: str = Field(min_length=1, description="The message text.")
    message_id: Id | None = Field(
        None, description="Client's id of the message; a resend with the same id is a retry."
    )


class ChatTokenRequest(BaseModel):
    """A tenant's backend asks for a browser's chat token for one of its users."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    user_id: Id = Field(description="The user's id in the client application.")
    conversation_id: Id | None = Field(
        None,
        description="Conversation the token is for, a name in the tenant's namespace as for "
        "messages; default one per user: web:<tenant>:<user>.",
    )
    ttl_seconds: int | None = Field(
        None, ge=1, description="Lifetime; at most (and by default) the gateway's limit."
    )


authenticate = bearer_tenant


def parse(body: bytes, tenant: str) -> Parsed:
    """The message_received for an authenticated web chat message."""
    message = validate(WebMessage, json_object(body))
    conversation_id = web_conversation(tenant, message.conversation_id, message.user_id)
    callback = STREAM_ADDRESS if message.callback_url is None else str(message.callback_url)
    return _message(
        tenant, conversation_id, message.user_id, message.text, message.message_id, callback
    )


def parse_chat(body: bytes, scope: ChatScope) -> Parsed:
    """The message_received for a chat page message; answered on the stream."""
    message = validate(ChatMessage, json_object(body))
    return _message(
        scope.tenant,
        scope.conversation_id,
        scope.user_id,
        message.text,
        message.message_id,
        STREAM_ADDRESS,
    )


STREAM_ADDRESS = ""
"""The reply address of a web message without a callback URL: answered on the stream."""


def _message(
    tenant: str,
    conversation_id: str,
    user_id: str,
    text: str,
    message_id: str | None,
    address: str,
) -> Parsed:
    event_id = stable_event_id("web", tenant, message_id) if message_id else None
    data: dict[str, Any] = {
        "channel": "web",
        "sender_id": user_id,
        "sender_name": None,
        "text": text,
        "reply_to": {"channel": "web", "address": address, "thread_id": None},
        "external_id": message_id,
        "attachments": [],
        "attributes": {},
    }
    return Parsed((Inbound("message_received", conversation_id, tenant, data, "web", event_id),))
