"""Whose conversation an id names: the namespace rules every inbound channel applies.

A conversation belongs to exactly one tenant, and its id says which, through the
channel's own configuration, never through whichever event arrived first:

- web chat: ``web:<tenant>:<name>``. A client names ``<name>`` (or the full id it was
  given back); a name is always put in the authenticated tenant's namespace, and an id
  in any other namespace (another tenant's ``web:``, or a ``slack:``, ``whatsapp:`` or
  ``email:`` id) is refused with 403 rather than silently renamed, so the attempt shows.
- Slack: ``slack:<team>:...``, derived from the signed payload; the tenant is the one
  configured for the workspace (``slack_teams``, else ``slack_tenant``).
- WhatsApp: ``whatsapp:<phone_number_id>:<user>``; the tenant is the one configured for
  the business number (``whatsapp_numbers``, else ``whatsapp_tenant``).
- email: ``email:<tenant>:<hash>``, the tenant of the relay that passed the mail on
  (see the email channel).
- webhooks: the source names a full id; it must be one of a tenant the source may
  address, and a channel's id must be that tenant's (:func:`check_addressable`).

Tenant names cannot contain ``:`` (settings refuse them), so ``web:a:b:c`` is tenant
``a``'s conversation ``b:c`` and nobody else's. The agent checks again with the same
:class:`ChannelOwners`: an event whose tenant is not the owner its conversation id
implies is refused, even as the conversation's first event (defence in depth).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from pipeline.config.sections import GatewaySettings
from pipeline.errors import InboundRejected

CHANNEL_PREFIXES = ("web:", "slack:", "whatsapp:", "email:")


@dataclass(frozen=True, slots=True)
class ChannelOwners:
    """Which tenant owns each channel's conversations, from the channels' settings.

    The gateway uses it to give an inbound message its tenant and to check what a
    webhook source names; the agent uses it to refuse an event of any other tenant.
    Both must be given the same settings.
    """

    slack_tenant: str = "default"
    slack_teams: Mapping[str, str] = field(default_factory=dict)
    whatsapp_tenant: str = "default"
    whatsapp_numbers: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_settings(cls, gateway: GatewaySettings) -> ChannelOwners:
        """The owners the gateway's channel settings define."""
        return cls(
            gateway.slack_tenant,
            dict(gateway.slack_teams),
            gateway.whatsapp_tenant,
            dict(gateway.whatsapp_numbers),
        )

    def slack(self, team_id: str) -> str:
        """The tenant of a Slack workspace."""
        return self.slack_teams.get(team_id, self.slack_tenant)

    def whatsapp(self, phone_number_id: str) -> str:
        """The tenant of a WhatsApp business number."""
        return self.whatsapp_numbers.get(phone_number_id, self.whatsapp_tenant)

    def owner(self, conversation_id: str) -> str | None:
        """The tenant ``conversation_id`` belongs to; None when the id is not a channel's
        (a webhook's own id, such as ``crm-7``) or is malformed."""
        channel, colon, rest = conversation_id.partition(":")
        if not colon:
            return None
        first, colon, _ = rest.partition(":")
        if not first or not colon:
            return None
        if channel in ("web", "email"):
            return first
        if channel == "slack":
            return self.slack(first)
        if channel == "whatsapp":
            return self.whatsapp(first)
        return None


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
    owners: ChannelOwners | None = None,
) -> None:
    """403 unless ``source`` may address ``conversation_id`` on behalf of ``tenant``.

    The tenant must be one of the source's, the id must start with one of its
    ``prefixes`` (when it has any), and a channel's id must belong to ``tenant`` by
    ``owners`` (the channels' settings); a channel's id that names no tenant is refused.
    """
    if tenant not in tenants:
        raise InboundRejected(403, f"webhook source {source!r} may not address tenant {tenant!r}")
    if prefixes and not conversation_id.startswith(tuple(prefixes)):
        raise InboundRejected(
            403,
            f"webhook source {source!r} may only address conversations starting with "
            + ", ".join(repr(p) for p in prefixes),
        )
    if not conversation_id.startswith(CHANNEL_PREFIXES):
        return
    owner = (owners or ChannelOwners()).owner(conversation_id)
    if owner is None:
        raise InboundRejected(
            403, f"conversation {conversation_id!r} names no tenant: it is no channel's id"
        )
    if owner != tenant:
        raise InboundRejected(
            403, f"conversation {conversation_id!r} does not belong to tenant {tenant!r}"
        )
