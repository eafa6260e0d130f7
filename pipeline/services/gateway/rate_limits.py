"""Per-tenant request rates at the gateway: 429 with ``Retry-After`` past a tenant's rate.

A tenant's rate is one or more limits in the ``limits`` library's notation
(``"20/second;600/minute"``), per tenant with ``*`` for the tenants not listed
(``rate_limits``). Each request counts once for each tenant it acts for, after it is
authenticated (an unauthenticated request cannot spend a tenant's allowance) and
before anything is produced. The window is a moving one, kept in this replica's memory
(:mod:`pipeline.http.rate_limits`): with N replicas a tenant gets up to N times its rate.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from limits import RateLimitItem

from pipeline.errors import InboundRejected
from pipeline.http.rate_limits import RateLimiter, parse_rate


class TenantRateLimits:
    """The configured rates and the requests each tenant made within them."""

    def __init__(self, rates: Mapping[str, str]) -> None:
        self.rates: dict[str, list[RateLimitItem]] = {
            tenant: parse_rate(text) for tenant, text in rates.items()
        }
        self.limiter = RateLimiter()

    def spend(self, tenants: Iterable[str]) -> None:
        """Count a request for each of ``tenants``; 429 (nothing counted) when one of them
        is over any of its limits, with the seconds until it may send again."""
        wanted = [(item, t) for t in sorted(set(tenants)) for item in self._items(t)]
        over = self.limiter.spend(wanted)
        if over is not None:
            raise InboundRejected(
                429,
                f"tenant {over.key!r} is over its request rate of {over.limit} at this "
                f"gateway; retry in {over.retry_after}s",
                retry_after=over.retry_after,
            )

    def _items(self, tenant: str) -> list[RateLimitItem]:
        return self.rates.get(tenant, self.rates.get("*", []))
