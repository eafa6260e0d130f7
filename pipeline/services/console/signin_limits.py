"""Sign-in attempts per operator name and per client address, limited before any
password is checked: past either rate a sign-in is answered 429 with ``Retry-After``
and costs no hashing. The windows are this replica's (:mod:`pipeline.http.rate_limits`).
"""

from __future__ import annotations

from pipeline.config.sections import ConsoleSettings
from pipeline.errors import OperatorActionRefused
from pipeline.http.rate_limits import RateLimiter, parse_rate


class SigninLimits:
    """The sign-in rates of the console's settings and the attempts made within them."""

    def __init__(self, cfg: ConsoleSettings) -> None:
        self.per_operator = parse_rate(cfg.signin_rate_per_operator)
        self.per_address = parse_rate(cfg.signin_rate_per_address)
        self.limiter = RateLimiter()

    def spend(self, operator: str, address: str) -> None:
        """Count an attempt for ``operator`` from ``address``; 429 (nothing counted) when
        either is past its rate, with the seconds to wait."""
        wanted = [(item, f"operator:{operator}") for item in self.per_operator]
        wanted += [(item, f"address:{address}") for item in self.per_address]
        over = self.limiter.spend(wanted)
        if over is None:
            return
        who = "this operator" if over.key.startswith("operator:") else "this address"
        raise OperatorActionRefused(
            429,
            f"too many sign-in attempts for {who} (at most {over.limit}); "
            f"try again in {over.retry_after}s",
            retry_after=over.retry_after,
        )
