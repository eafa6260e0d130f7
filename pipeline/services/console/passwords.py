"""Operators' password hashes: argon2id (argon2-cffi) for new ones, scrypt still read.

``pipeline console hash-password`` prints an argon2id hash in the PHC string format
(``$argon2id$v=19$m=65536,t=3,p=4$<salt>$<hash>``) with argon2-cffi's default, RFC 9106
low-memory parameters; verifying reads the parameters from the hash itself. Hashes that
earlier versions printed, ``scrypt$<n>$<r>$<p>$<salt>$<hash>`` (base64 salt and hash,
hashlib.scrypt with a 32-byte key), are still verified, so deployed settings keep
working; hash the password again to move an operator to argon2id.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

ARGON2_PREFIX = "$argon2"
SCRYPT = "scrypt"
# RFC 7914's interactive parameters: about 16 MiB and some tens of ms per check.
N, R, P = 2**14, 8, 1
KEY_BYTES = 32


def hash_password(
    password: str, *, time_cost: int | None = None, memory_cost: int | None = None
) -> str:
    """The argon2id hash of ``password`` with a fresh random salt (``time_cost`` and
    ``memory_cost`` in KiB override the defaults: tests make cheap ones)."""
    defaults = PasswordHasher()
    hasher = PasswordHasher(
        time_cost=time_cost or defaults.time_cost,
        memory_cost=memory_cost or defaults.memory_cost,
        parallelism=defaults.parallelism,
    )
    return hasher.hash(password)


def verify_password(password: str, stored: str) -> bool:
    """Whether ``password`` matches ``stored``, an argon2 or a scrypt hash (False for a
    malformed one)."""
    if stored.startswith(ARGON2_PREFIX):
        try:
            return PasswordHasher().verify(stored, password)
        except (VerificationError, InvalidHashError):
            return False
    return _verify_scrypt(password, stored)


def scrypt_hash(password: str, *, n: int = N, r: int = R, p: int = P) -> str:
    """A scrypt hash as earlier versions printed them (verified still; new hashes are
    argon2id)."""
    salt = secrets.token_bytes(16)
    key = _scrypt(password, salt, n, r, p)
    return f"{SCRYPT}${n}${r}${p}${_b64(salt)}${_b64(key)}"


def _verify_scrypt(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, key = stored.split("$")
        if scheme != SCRYPT:
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
