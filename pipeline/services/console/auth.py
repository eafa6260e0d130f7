"""Who may use the console: operators, their passwords and tokens, sessions, CSRF.

Passwords are stored as ``scrypt$<n>$<r>$<p>$<salt>$<hash>`` (salt and hash in
base64, hashlib.scrypt with a 32-byte key), the string ``pipeline console
hash-password`` prints. A signed-in operator holds a session cookie signed with the
session secret (itsdangerous, with its age checked); it carries the operator id and a
per-session CSRF token that every form repeats. Every comparison of a secret is
constant-time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from itsdangerous import BadSignature, URLSafeTimedSerializer
from pydantic import TypeAdapter, ValidationError

from pipeline.config import Settings
from pipeline.config.sections import ConsoleOperator
from pipeline.errors import ConfigError

SCHEME = "scrypt"
# RFC 7914's interactive parameters: about 16 MiB and some tens of ms per check.
N, R, P = 2**14, 8, 1
KEY_BYTES = 32
SESSION_COOKIE = "pipeline_console"
_SALT = "pipeline-console-session"


def hash_password(password: str, *, n: int = N, r: int = R, p: int = P) -> str:
    """The stored form of ``password`` with a fresh random salt."""
    salt = secrets.token_bytes(16)
    key = _scrypt(password, salt, n, r, p)
    return f"{SCHEME}${n}${r}${p}${_b64(salt)}${_b64(key)}"


def verify_password(password: str, stored: str) -> bool:
    """Whether ``password`` matches ``stored`` (False for a malformed hash)."""
    try:
        scheme, n, r, p, salt, key = stored.split("$")
        if scheme != SCHEME:
            return False
        expected = base64.b64decode(key, validate=True)
        found = _scrypt(password, base64.b64decode(salt, validate=True), int(n), int(r), int(p))
    except ValueError:
        return False
    return hmac.compare_digest(found, expected)


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    memory = 128 * r * (n + 2) + 1024 * 1024
    return hashlib.scrypt(
        password.encode(), salt=salt, n=n, r=r, p=p, maxmem=memory, dklen=KEY_BYTES
    )


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


# A check against this keeps an unknown operator's sign-in as slow as a known one's.
_DUMMY_HASH = hash_password(secrets.token_hex(8))


class Operators:
    """The configured operators: sign-in by password, API access by token."""

    def __init__(self, operators: Mapping[str, ConsoleOperator]) -> None:
        self._operators = dict(operators)

    @classmethod
    def from_settings(cls, settings: Settings) -> Operators:
        """Operators of the settings plus those of ``operators_file`` (which wins)."""
        operators = dict(settings.console.operators)
        path = settings.console.operators_file
        if path is not None:
            operators.update(read_operators_file(path))
        return cls(operators)

    def __len__(self) -> int:
        return len(self._operators)

    def check_password(self, operator: str, password: str) -> bool:
        found = self._operators.get(operator)
        stored = found.password_hash if found is not None else None
        if stored is None:
            verify_password(password, _DUMMY_HASH)
            return False
        return verify_password(password, stored.get_secret_value())

    def operator_for_token(self, token: str) -> str | None:
        """The operator whose token ``token`` is (every token compared, constant-time)."""
        found = None
        for operator, entry in self._operators.items():
            if entry.token is not None and hmac.compare_digest(
                entry.token.get_secret_value().encode(), token.encode()
            ):
                found = operator
        return found


_OPERATORS = TypeAdapter(dict[str, ConsoleOperator])


def read_operators_file(path: Path) -> dict[str, ConsoleOperator]:
    """``{"<operator>": {"password_hash": ..., "token": ...}}`` from a file (a secret)."""
    try:
        raw = json.loads(path.read_text())
        return _OPERATORS.validate_python(raw)
    except OSError as exc:
        raise ConfigError(f"cannot read PIPELINE_CONSOLE__OPERATORS_FILE {path}: {exc}") from None
    except (ValueError, ValidationError) as exc:
        reason = exc.errors()[0]["msg"] if isinstance(exc, ValidationError) else str(exc)
        raise ConfigError(
            f"PIPELINE_CONSOLE__OPERATORS_FILE {path} is not a JSON object of operators "
            f'({{"ada": {{"password_hash": "scrypt$..."}}}}): {reason}'
        ) from None


@dataclass(frozen=True, slots=True)
class Session:
    operator: str
    csrf: str


class Sessions:
    """Signed session cookies that expire ``max_age`` seconds after sign-in."""

    def __init__(self, secret: str, max_age: int) -> None:
        self._signer = URLSafeTimedSerializer(secret, salt=_SALT)
        self.max_age = max_age

    @classmethod
    def from_settings(cls, settings: Settings) -> Sessions:
        configured = settings.console.session_secret
        secret = configured.get_secret_value() if configured else secrets.token_urlsafe(32)
        return cls(secret, settings.console.session_max_age_seconds)

    def new(self, operator: str) -> tuple[Session, str]:
        """A fresh session for ``operator`` and its cookie value."""
        session = Session(operator, secrets.token_urlsafe(24))
        return session, self._signer.dumps({"op": session.operator, "csrf": session.csrf})

    def read(self, cookie: str | None) -> Session | None:
        """The session of a cookie, or None when absent, forged or expired."""
        if not cookie:
            return None
        try:
            data = self._signer.loads(cookie, max_age=self.max_age)
        except BadSignature:  # SignatureExpired is a BadSignature
            return None
        if not isinstance(data, dict):
            return None
        operator, csrf = data.get("op"), data.get("csrf")
        if not isinstance(operator, str) or not isinstance(csrf, str):
            return None
        return Session(operator, csrf)


def same_token(given: str | None, expected: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


def cross_site(
    origin: str | None, fetch_site: str | None, own_origin: str, allowed: frozenset[str]
) -> str | None:
    """Why a POST is refused as cross-site, or None: ``Sec-Fetch-Site`` must be
    same-origin (or none: typed by the user) when sent, ``Origin`` the console's own or
    an allowed one when sent."""
    if fetch_site is not None and fetch_site not in ("same-origin", "none"):
        return f"cross-site request refused (Sec-Fetch-Site: {fetch_site})"
    if origin is not None and origin != own_origin and origin not in allowed:
        return "cross-site request refused (its Origin is not the console's)"
    return None
