"""Signed web callbacks: how a receiver knows a reply POST came from this pipeline.

Every callback carries two headers (in the style of Stripe's and Slack's schemes)::

    X-Pipeline-Timestamp: 1718000000                    (Unix seconds when it was signed)
    X-Pipeline-Signature: v1=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>

The secret is the tenant's callback signing secret; the body is the exact bytes of the
request. A receiver recomputes the HMAC, compares it in constant time, and refuses a
timestamp more than :data:`TOLERANCE_SECONDS` away from its clock (a replayed request).
While a secret is being rotated the signature header may list several ``v1=`` values,
separated by commas; one matching is enough.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping

TIMESTAMP_HEADER = "X-Pipeline-Timestamp"
SIGNATURE_HEADER = "X-Pipeline-Signature"
VERSION = "v1"
TOLERANCE_SECONDS = 300


def signature(secret: str, timestamp: int | str, body: bytes) -> str:
    """The hex HMAC-SHA256 of ``<timestamp>.<body>`` under ``secret``."""
    message = str(timestamp).encode() + b"." + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def sign(secret: str, body: bytes, *, now: float | None = None) -> dict[str, str]:
    """The two headers that sign ``body`` at ``now`` (default: the current time)."""
    timestamp = int(time.time() if now is None else now)
    return {
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: f"{VERSION}={signature(secret, timestamp, body)}",
    }


def verify(
    secret: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    tolerance_seconds: float = TOLERANCE_SECONDS,
    now: float | None = None,
) -> bool:
    """True when ``headers`` sign ``body`` with ``secret`` within the tolerance.

    ``headers`` is any mapping of the request's headers; names match in any case.
    """
    lowered = {name.lower(): value for name, value in headers.items()}
    stamp = lowered.get(TIMESTAMP_HEADER.lower(), "")
    signed = lowered.get(SIGNATURE_HEADER.lower(), "")
    if not (stamp.isascii() and stamp.isdigit() and len(stamp) <= 12):
        return False
    current = time.time() if now is None else now
    if abs(current - int(stamp)) > tolerance_seconds:
        return False
    expected = signature(secret, stamp, body)
    candidates = [
        part.strip().removeprefix(f"{VERSION}=")
        for part in signed.split(",")
        if part.strip().startswith(f"{VERSION}=")
    ]
    return any(
        hmac.compare_digest(expected.encode(), candidate.encode("utf-8", "replace"))
        for candidate in candidates
    )
