"""Whose conversation an id names: the namespace rules every inbound channel applies.

A conversation belongs to exactly one tenant. The ids the gateway makes say so:

- web chat: ``web:<tenant>:<name>``. A client names ``<name>`` (or the full id it was
  given back); a name is always put in the authenticated tenant's namespace, and an id
  in any other namespace (another tenant's ``web:``, or a ``slack:``, ``whatsapp:`` or
  ``email:`` id) is refused with 403 rather than silently renamed, so the attempt shows.
- Slack, WhatsApp: derived from the signed provider payload (workspace, channel, number);
  the tenant is the one configured for the app, nobody names them.
- email: a hash of the tenant, the sender and the thread root (see the email channel).
- webhooks: the source names a full id; it must be one the source's tenants may address.

Tenant names cannot contain ``:`` (settings refuse them), so ``web:a:b:c`` is tenant
``a``'s conversation ``b:c`` and nobody else's. The agent checks again: a conversation
stores its tenant and refuses events of any other (defence in depth).
"""

from __future__ import annotations

from collections.abc import Sequence

from pipeline.errors import InboundRejected

CHANNEL_PREFIXES = ("web:", "slack:", "whatsapp:", "email:")


def web_conversation(tenant: str, named: str | None, user_id: str) -> str:
    """The stored id of a web conversation the client named (or the user's default)."""
    own = f"web:{tenant}:"
    if named is None:
        return own + user_id
    if named.startswith(own):
        return named
    if named.startswith(CHANNEL_PREFIXES):
        raise InboundRejected(
            403,
            f"conversation {named!r} is not in tenant {tenant!r}'s namespace: name a "
            f"conversation of your own ({own}<name>, or just <name>)",
        )
    return own + named


def web_owner(conversation_id: str) -> str | None:
    """The tenant of a ``web:<tenant>:...`` id; None for ids of other channels."""
    if not conversation_id.startswith("web:"):
        return None
    tenant, colon, _ = conversation_id[4:].partition(":")
    return tenant if colon else None


def check_addressable(
    source: str,
    tenant: str,
    conversation_id: str,
    tenants: Sequence[str],
    prefixes: Sequence[str] = (),
) -> None:
    """403 unless ``source`` may address ``conversation_id`` on behalf of ``tenant``."""
    if tenant not in tenants:
        raise InboundRejected(403, f"webhook source {source!r} may not address tenant {tenant!r}")
    owner = web_owner(conversation_id)
    if owner is not None and owner != tenant:
        raise InboundRejected(
            403, f"conversation {conversation_id!r} does not belong to tenant {tenant!r}"
        )
    if prefixes and not conversation_id.startswith(tuple(prefixes)):
        raise InboundRejected(
            403,
            f"webhook source {source!r} may only address conversations starting with "
            + ", ".join(repr(p) for p in prefixes),
        )
