"""Session cookies that end: signed, aged, and refused once signed out on any replica.

A signed-in operator holds a cookie signed with the session secret (itsdangerous, its
age checked against ``session_max_age_seconds``) carrying the operator id, a session id
and the session's CSRF token. Signing out ends the session on the server, not only in
the browser: the console writes the session id to the compacted sessions topic
(``console_sessions``, keyed by session id, with the time the cookie would have expired
anyway), every replica reads that topic live (:mod:`pipeline.services.console.feed`) into
its :class:`EndedSessions`, and a cookie of an ended session is refused like a forged
one. A record older than the longest session matters to no cookie, so the topic keeps a
week (the longest ``session_max_age_seconds``) and a replica reads it from
``now - session_max_age_seconds`` on.

A cookie without a session id (signed by a version before sessions could end) is
refused: its operator signs in again once.
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass, field

from itsdangerous import BadSignature, URLSafeTimedSerializer

from pipeline.config import Settings

SESSION_COOKIE = "pipeline_console"
_SALT = "pipeline-console-session"


@dataclass(frozen=True, slots=True)
class Session:
    operator: str
    csrf: str
    sid: str = ""
    issued_at: float = field(default=0.0, compare=False)


class EndedSessions:
    """Ended sessions, by session id, with the time each cookie expires anyway (after
    which it is forgotten: the cookie's age refuses it)."""

    def __init__(self) -> None:
        self._ended: dict[str, float] = {}

    def end(self, sid: str, until: float) -> None:
        self._ended[sid] = max(until, self._ended.get(sid, 0.0))
        if len(self._ended) % 1024 == 0:
            self.forget_expired()

    def __contains__(self, sid: object) -> bool:
        return sid in self._ended

    def __len__(self) -> int:
        return len(self._ended)

    def forget_expired(self, now: float | None = None) -> None:
        now = time.time() if now is None else now
        self._ended = {sid: until for sid, until in self._ended.items() if until >= now}


def ended_record(session: Session, max_age: int) -> bytes:
    """The sessions topic's record of a sign-out (JSON), keyed by the session id."""
    until = (session.issued_at or time.time()) + max_age
    return json.dumps(
        {"operator": session.operator, "ended_at": time.time(), "expires_at": until},
        separators=(",", ":"),
    ).encode()


def read_ended_record(value: bytes) -> float:
    """When the ended session's cookie expires anyway (ValueError for another record)."""
    data = json.loads(value)
    if not isinstance(data, dict) or not isinstance(data.get("expires_at"), int | float):
        raise ValueError("not a record of an ended session")
    return float(data["expires_at"])


class Sessions:
    """Signed session cookies that expire ``max_age`` seconds after sign-in and that end
    when signed out (``ended``)."""

    def __init__(self, secret: str, max_age: int, ended: EndedSessions | None = None) -> None:
        self._signer = URLSafeTimedSerializer(secret, salt=_SALT)
        self.max_age = max_age
        self.ended = ended if ended is not None else EndedSessions()

    @classmethod
    def from_settings(cls, settings: Settings) -> Sessions:
        configured = settings.console.session_secret
        secret = configured.get_secret_value() if configured else secrets.token_urlsafe(32)
        return cls(secret, settings.console.session_max_age_seconds)

    def new(self, operator: str) -> tuple[Session, str]:
        """A fresh session for ``operator`` and its cookie value."""
        session = Session(
            operator, secrets.token_urlsafe(24), secrets.token_urlsafe(18), time.time()
        )
        data = {"op": session.operator, "csrf": session.csrf, "sid": session.sid}
        return session, self._signer.dumps(data)

    def read(self, cookie: str | None) -> Session | None:
        """The session of a cookie, or None when absent, forged, expired or ended."""
        if not cookie:
            return None
        try:
            data, signed_at = self._signer.loads(
                cookie, max_age=self.max_age, return_timestamp=True
            )
        except BadSignature:  # SignatureExpired is a BadSignature
            return None
        if not isinstance(data, dict):
            return None
        operator, csrf, sid = data.get("op"), data.get("csrf"), data.get("sid")
        if not isinstance(operator, str) or not isinstance(csrf, str) or not isinstance(sid, str):
            return None
        if not sid or sid in self.ended:
            return None
        return Session(operator, csrf, sid, signed_at.timestamp())
