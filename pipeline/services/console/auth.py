"""Who may use the console: operators, their credentials, tenants and roles; CSRF.

Operators come from the settings (``PIPELINE_CONSOLE__OPERATORS``) and from
``operators_file`` (a mounted secret), which is read again whenever it changes
(:meth:`Operators.reload`), so removing an operator from it signs that operator out on
every replica without a restart, and a changed role or tenant list applies at once. A
request is an operator's only while that operator is configured: every request looks
the operator up again (:meth:`Operators.access`).

Password hashes are :mod:`pipeline.services.console.passwords`' (argon2id, scrypt still
read); sessions are :mod:`pipeline.services.console.sessions`'. Every comparison of a
secret is constant-time.
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import secrets
from collections.abc import Callable, Mapping
from pathlib import Path

from pydantic import TypeAdapter, ValidationError

from pipeline.config import Settings
from pipeline.config.sections import ConsoleOperator
from pipeline.errors import ConfigError
from pipeline.services.console.access import Access
from pipeline.services.console.passwords import hash_password, verify_password

log = logging.getLogger(__name__)

Verifier = Callable[[str, str], bool]

# A check against this keeps an unknown operator's sign-in as slow as a known one's.
_DUMMY_HASH = hash_password(secrets.token_hex(8))


class Operators:
    """The configured operators: sign-in by password, API access by token, and what each
    may see and do."""

    def __init__(
        self,
        operators: Mapping[str, ConsoleOperator],
        *,
        path: Path | None = None,
        settings_operators: Mapping[str, ConsoleOperator] | None = None,
        verify: Verifier = verify_password,
    ) -> None:
        self._operators = dict(operators)
        self._path = path
        self._settings_operators = dict(settings_operators or {})
        self._stamp = _stamp(path) if path is not None else None
        self.verify = verify

    @classmethod
    def from_settings(cls, settings: Settings) -> Operators:
        """Operators of the settings plus those of ``operators_file`` (which wins)."""
        operators = dict(settings.console.operators)
        path = settings.console.operators_file
        if path is not None:
            operators.update(read_operators_file(path))
        return cls(operators, path=path, settings_operators=settings.console.operators)

    def __len__(self) -> int:
        return len(self._operators)

    def unscoped(self) -> list[str]:
        """Operators configured without tenants and role (every tenant, admin)."""
        return sorted(name for name, entry in self._operators.items() if entry.unscoped)

    def access(self, operator: str) -> Access | None:
        """What ``operator`` may see and do; None when no such operator is configured."""
        entry = self._operators.get(operator)
        return None if entry is None else Access.of(operator, entry)

    def check_password(self, operator: str, password: str) -> bool:
        found = self._operators.get(operator)
        stored = found.password_hash if found is not None else None
        if stored is None:
            self.verify(password, _DUMMY_HASH)
            return False
        return self.verify(password, stored.get_secret_value())

    def operator_for_token(self, token: str) -> str | None:
        """The operator whose token ``token`` is (every token compared, constant-time)."""
        found = None
        for operator, entry in self._operators.items():
            if entry.token is not None and hmac.compare_digest(
                entry.token.get_secret_value().encode(), token.encode()
            ):
                found = operator
        return found

    def reload(self) -> bool:
        """Read ``operators_file`` again if it changed; whether the operators changed. A
        file that cannot be read or is invalid keeps the operators as they were."""
        if self._path is None:
            return False
        stamp = _stamp(self._path)
        if stamp == self._stamp:
            return False
        try:
            from_file = read_operators_file(self._path)
        except ConfigError as exc:
            log.error("keeping the console's operators as they were: %s", exc)
            return False
        self._stamp = stamp
        operators = {**self._settings_operators, **from_file}
        if operators == self._operators:
            return False
        gone = sorted(self._operators.keys() - operators.keys())
        self._operators = operators
        log.info(
            "console operators read again from %s: %d operators%s",
            self._path,
            len(operators),
            f"; removed (signed out): {', '.join(gone)}" if gone else "",
        )
        return True


def _stamp(path: Path) -> tuple[int, int, int] | None:
    try:
        status = os.stat(path)
    except OSError:
        return None
    return status.st_mtime_ns, status.st_size, status.st_ino


_OPERATORS = TypeAdapter(dict[str, ConsoleOperator])


def read_operators_file(path: Path) -> dict[str, ConsoleOperator]:
    """``{"<operator>": {"password_hash": ..., "token": ..., "tenants": [...],
    "role": ...}}`` from a file (a secret)."""
    try:
        raw = json.loads(path.read_text())
        return _OPERATORS.validate_python(raw)
    except OSError as exc:
        raise ConfigError(f"cannot read PIPELINE_CONSOLE__OPERATORS_FILE {path}: {exc}") from None
    except (ValueError, ValidationError) as exc:
        reason = exc.errors()[0]["msg"] if isinstance(exc, ValidationError) else str(exc)
        raise ConfigError(
            f"PIPELINE_CONSOLE__OPERATORS_FILE {path} is not a JSON object of operators "
            f'({{"ada": {{"password_hash": "$argon2id$...", "tenants": ["acme"], '
            f'"role": "agent"}}}}): {reason}'
        ) from None


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
