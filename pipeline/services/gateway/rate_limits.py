"""Per-tenant request rates at the gateway: 429 with ``Retry-After`` past a tenant's rate.

A tenant's rate is one or more limits in the ``limits`` library's notation
(``"20/second;600/minute"``), per tenant with ``*`` for the tenants not listed
(``rate_limits``). Each request counts once for each tenant it acts for, after it is
authenticated (an unauthenticated request cannot spend a tenant's allowance) and
before anything is produced. The window is a moving one, kept in this replica's memory:
with N replicas a tenant gets up to N times its rate.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Mapping

from limits import RateLimitItem, parse_many
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

from pipeline.errors import InboundRejected


class TenantRateLimits:
    """The configured rates and the requests each tenant made within them."""

    def __init__(self, rates: Mapping[str, str]) -> None:
        self.rates: dict[str, list[RateLimitItem]] = {
            tenant: parse_many(text) for tenant, text in rates.items()
        }
        self.limiter = MovingWindowRateLimiter(MemoryStorage())

    def spend(self, tenants: Iterable[str]) -> None:
        """Count a request for each of ``tenants``; 429 (nothing counted) when one of them
        is over any of its limits, with the seconds until it may send again."""
        wanted = [(t, item) for t in sorted(set(tenants)) for item in self._items(t)]
        for tenant, item in wanted:
            if not self.limiter.test(item, tenant):
                reset = self.limiter.get_window_stats(item, tenant).reset_time
                wait = max(1, math.ceil(reset - time.time()))
                raise InboundRejected(
                    429,
                    f"tenant {tenant!r} is over its request rate of {item} at this gateway; "
                    f"retry in {wait}s",
                    retry_after=wait,
                )
        for tenant, item in wanted:
            self.limiter.hit(item, tenant)

    def _items(self, tenant: str) -> list[RateLimitItem]:
        return self.rates.get(tenant, self.rates.get("*", []))
