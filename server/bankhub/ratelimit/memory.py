"""In-process token buckets: the single-node default."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

from ..protocol.session import TokenBucket
from .base import Limit, RateLimiter, Verdict

__all__ = ["MemoryRateLimiter"]


class MemoryRateLimiter(RateLimiter):
    """Buckets in a bounded LRU: the least recently used are forgotten (as if full) past ``max_keys``."""

    def __init__(self, *, max_keys: int = 100_000, clock: Callable[[], float] = time.monotonic) -> None:
        self._buckets: OrderedDict[tuple[str, float, int], TokenBucket] = OrderedDict()
        self._max = max_keys
        self._clock = clock

    async def hit(self, key: str, limit: Limit) -> Verdict:
        now = self._clock()
        k = (key, limit.rate, limit.burst)
        bucket = self._buckets.get(k)
        if bucket is None:
            bucket = self._buckets[k] = TokenBucket(limit.rate, limit.burst, now)
            if len(self._buckets) > self._max:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(k)
        wait = bucket.take(now)
        return Verdict(allowed=wait == 0.0, retry_after=wait)
