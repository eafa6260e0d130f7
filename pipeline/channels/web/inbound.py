"""Web chat, inbound: a JSON message authenticated by the tenant's bearer token.

The tenant is the key of the token that matches. The conversation is the one the
client names, in its tenant's namespace (``web:<tenant>:<name>``; an id of another
tenant or channel is refused with 403, see :mod:`pipeline.channels.tenancy`), or one
per user (``web:<tenant>:<user_id>``). Answers go to the client's ``callback_url``.
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
    callback_url: CallbackUrl = Field(description="Where the answer is POSTed.")
    message_id: Id | None = Field(
        None, description="Client's id of the message; a resend with the same id is a retry."
    )


authenticate = bearer_tenant


def parse(body: bytes, tenant: str) -> Parsed:
    """The message_received for an authenticated web chat message."""
    message = validate(WebMessage, json_object(body))
    conversation_id = web_conversation(tenant, message.conversation_id, message.user_id)
    event_id = stable_event_id("web", tenant, message.message_id) if message.message_id else None
    data: dict[str, Any] = {
        "channel": "web",
        "sender_id": message.user_id,
        "sender_name": None,
        "text": message.text,
        "reply_to": {"channel": "web", "address": str(message.callback_url), "thread_id": None},
        "external_id": message.message_id,
        "attachments": [],
        "attributes": {},
    }
    return Parsed((Inbound("message_received", conversation_id, tenant, data, "web", event_id),))
