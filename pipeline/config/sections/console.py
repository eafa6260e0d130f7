"""The operator console's settings: operators, roles, sessions, sign-in limits."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

from limits import parse_many
from pydantic import Field, SecretStr, StringConstraints, field_validator, model_validator

from pipeline.config.sections._base import Tenant, _Section

# What `pipeline console hash-password` prints (argon2id), or the scrypt form of earlier
# versions, which is still verified.
_PASSWORD_HASH = re.compile(
    r"\$argon2id\$v=[0-9]+\$m=[0-9]+,t=[0-9]+,p=[0-9]+\$[A-Za-z0-9+/]+={0,2}\$[A-Za-z0-9+/]+={0,2}"
    r"|scrypt\$[1-9][0-9]*\$[1-9][0-9]*\$[1-9][0-9]*\$[A-Za-z0-9+/]+={0,2}\$[A-Za-z0-9+/]+={0,2}"
)


OperatorRole = Literal["viewer", "agent", "admin"]
"""What an operator may do: ``viewer`` reads; ``agent`` also takes, replies, releases and
decides approvals and uncertain tool calls; ``admin`` also redrives dead letters."""


ALL_TENANTS = "*"


class ConsoleOperator(_Section):
    """One operator of the console: a password hash (``pipeline console hash-password``)
    for the sign-in page and/or a bearer token for API use, the tenants whose
    conversations the operator sees and the role that says what the operator may do."""

    password_hash: SecretStr | None = Field(
        None,
        description="argon2id hash as hash-password prints ($argon2id$...); scrypt$... "
        "hashes of earlier versions are still verified.",
    )
    token: SecretStr | None = Field(
        None, description="Bearer token for API use (Authorization: Bearer <token>)."
    )
    tenants: list[Tenant | Literal["*"]] = Field(
        default_factory=lambda: [ALL_TENANTS],
        min_length=1,
        description="Tenants whose conversations, approvals, uncertain actions and dead "
        "letters the operator sees and acts on; ['*'] (the default, which operators "
        "configured before tenants existed get) for every tenant.",
    )
    role: OperatorRole = Field(
        "admin",
        description="'viewer' (reads), 'agent' (also takes, replies, releases, decides "
        "approvals and uncertain actions) or 'admin' (also redrives dead letters); "
        "'admin' by default, what operators configured before roles existed could do.",
    )

    @field_validator("password_hash")
    @classmethod
    def _a_password_hash(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not _PASSWORD_HASH.fullmatch(value.get_secret_value()):
            raise ValueError(
                "password_hash is not a hash of `pipeline console hash-password` "
                "($argon2id$v=...$m=...,t=...,p=...$<salt>$<hash>, or an earlier "
                "scrypt$...); in a shell, put it in single quotes: in double quotes each $ "
                "is expanded and the hash is mangled"
            )
        return value

    @model_validator(mode="after")
    def _some_credential(self) -> ConsoleOperator:
        if self.password_hash is None and self.token is None:
            raise ValueError("an operator needs a password_hash or a token")
        if ALL_TENANTS in self.tenants and len(self.tenants) > 1:
            raise ValueError("an operator's tenants are ['*'] or a list of tenants, not both")
        return self

    @property
    def unscoped(self) -> bool:
        """Configured without tenants and role: every tenant, admin (as before they existed)."""
        return not ({"tenants", "role"} & self.model_fields_set)


OperatorId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.@-]{1,64}$")]


class ConsoleSettings(_Section):
    host: str = Field("0.0.0.0", description="Address the operator console listens on.")
    port: int = Field(8090, ge=0, le=65535, description="Operator console HTTP port.")
    operators: dict[OperatorId, ConsoleOperator] = Field(
        default_factory=dict,
        description="Operators by id: password_hash and/or token (secrets).",
    )
    operators_file: Path | None = Field(
        None,
        description="A JSON file of more operators in the same shape (a mounted secret); "
        "read at start.",
    )
    session_secret: SecretStr | None = Field(
        None,
        description="Key signing the session cookies; the same on every replica (a random "
        "one per process if unset: sessions then end with the process).",
    )
    session_max_age_seconds: int = Field(
        8 * 3600,
        ge=60,
        le=7 * 24 * 3600,
        description="A session ends this long after sign-in (at most 7 days, as long as the "
        "sessions topic keeps a sign-out).",
    )
    sessions_topic: str = Field(
        "console_sessions",
        description="Compacted topic of ended sessions (sign-outs), read by every console "
        "replica, so a signed-out cookie is refused everywhere.",
    )
    signin_rate_per_operator: str = Field(
        "10/minute;60/hour",
        description="Sign-in attempts per operator name at each replica, in the limits "
        "notation; past it the sign-in is answered 429 with Retry-After before any password "
        "is checked.",
    )
    signin_rate_per_address: str = Field(
        "30/minute;300/hour",
        description="Sign-in attempts per client address at each replica (the address "
        "http.trusted_proxies name), the same way.",
    )
    operators_reload_seconds: float = Field(
        5.0,
        gt=0,
        description="How often operators_file is checked for changes: an operator removed "
        "from it is signed out, a changed role or tenant list applies, without a restart.",
    )
    cookie_secure: bool = Field(
        True, description="Mark the session cookie Secure (HTTPS only); false for plain HTTP."
    )
    allowed_origins: list[str] = Field(
        default_factory=list,
        description="Origins (scheme://host[:port]) besides the console's own from which "
        "forms may be posted (a proxy's public address).",
    )
    lookback_hours: float = Field(
        24.0, gt=0, description="At start, read the topics from this long ago."
    )
    max_conversations: int = Field(
        5000, ge=10, description="Conversations kept in the live view; the oldest go first."
    )
    max_messages: int = Field(
        50, ge=1, description="Messages kept per conversation in the live view."
    )
    dead_letters_listed: int = Field(
        100,
        ge=1,
        le=1000,
        description="Dead letters listed on the dead-letters page, newest first.",
    )

    @field_validator("signin_rate_per_operator", "signin_rate_per_address")
    @classmethod
    def _signin_rate_in_limits_notation(cls, text: str) -> str:
        try:
            parse_many(text)
        except ValueError:
            raise ValueError(
                f"sign-in rate {text!r} is not in the notation '<count>/<second|minute|"
                "hour|day>' (several separated by ';')"
            ) from None
        return text
