"""A per-provider send rate shared by every worker (fixed windows counted in Redis).

When a platform's window is full, a chunk stops and is redelivered when the window resets:
the worker never sleeps, and the devices not yet sent to keep their place.
"""

from __future__ import annotations

import time

from limits import parse
from limits.storage import storage_from_string
from limits.strategies import FixedWindowRateLimiter


class ProviderRateLimit:
    def __init__(self, redis_url: str, rates: dict[str, str]) -> None:
        self._limiter = FixedWindowRateLimiter(storage_from_string(redis_url))
        self._rates = {platform: parse(rate) for platform, rate in rates.items()}

    def capacity(self) -> int:
        """The most sends one take may ask for: the smallest window. A group larger than a
        window could never be taken and its chunk would pause for ever."""
        return min((item.amount for item in self._rates.values()), default=1)

    def wait(self, platform: str, count: int = 1) -> float | None:
        """Take `count` sends from `platform`'s window: None if allowed, else seconds to wait
        (and none are taken)."""
        item = self._rates.get(platform)
        if item is None or self._limiter.hit(item, "offgrid-push", platform, cost=count):
            return None
        stats = self._limiter.get_window_stats(item, "offgrid-push", platform)
        return max(stats.reset_time - time.time(), 0.0)
