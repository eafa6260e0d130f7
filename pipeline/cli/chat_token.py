"""``pipeline chat-token``: a new link to the chat page when the printed one has expired."""

from __future__ import annotations

import click

from pipeline.cli.exits import errors_as_exit
from pipeline.config import load_settings
from pipeline.dev.stack.chat_link import (
    CHAT_TENANT,
    CHAT_USER,
    DEVELOPMENT_CHAT_SECRET,
    chat_link,
)


@click.command("chat-token")
@click.option("--tenant", default=CHAT_TENANT, show_default=True, help="The user's tenant.")
@click.option("--user", default=CHAT_USER, show_default=True, help="The user's id.")
@click.option(
    "--ttl",
    type=click.IntRange(min=60),
    default=None,
    help="Lifetime in seconds [default and most: PIPELINE_GATEWAY__CHAT_TOKEN_TTL_SECONDS].",
)
@click.option(
    "--gateway-url",
    default=None,
    help="The gateway's address [default: http://127.0.0.1:PIPELINE_GATEWAY__PORT].",
)
@click.option("--token-only", is_flag=True, help="Print the token alone, not the link.")
def chat_token_command(
    tenant: str, user: str, ttl: int | None, gateway_url: str | None, token_only: bool
) -> None:
    """Print a chat page link with a fresh chat token for USER of TENANT.

    The token is signed with PIPELINE_GATEWAY__CHAT_TOKEN_SECRET, or, when that is unset,
    with the development secret of `pipeline up`; the gateway accepts it until it
    expires, in conversation web:TENANT:USER.
    """
    with errors_as_exit():
        settings = load_settings()
    gateway = settings.gateway
    configured = gateway.chat_token_secret
    secret = DEVELOPMENT_CHAT_SECRET if configured is None else configured.get_secret_value()
    link = chat_link(
        gateway, secret, tenant=tenant, user=user, ttl_seconds=ttl, base_url=gateway_url
    )
    if token_only:
        click.echo(link.token)
        return
    click.echo(link.url)
    signed = "the development secret of `pipeline up`" if configured is None else "its secret"
    click.echo(f"expires at {link.expires_text}; signed with {signed}", err=True)
