"""Token buckets in Redis/Valkey, shared by every node (one atomic Lua script per hit)."""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from .base import Limit, LimiterUnavailable, RateLimiter, Verdict

__all__ = ["RedisRateLimiter"]

# KEYS[1] bucket; ARGV rate, burst. State: tokens and the server-time stamp (microseconds).
# The server's own clock is used, so nodes with skewed clocks agree.
_SCRIPT = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'stamp')
local tokens = tonumber(state[1])
local stamp = tonumber(state[2])
if tokens == nil then tokens = burst; stamp = now end
tokens = math.min(burst, tokens + (now - stamp) / 1000000 * rate)
local allowed = 0
local wait = 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
else
  wait = (1 - tokens) / rate
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'stamp', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return {allowed, tostring(wait)}
"""


class RedisRateLimiter(RateLimiter):
    def __init__(self, url: str, *, prefix: str = "bh:rl:", timeout: float = 0.5) -> None:
        self._redis = aioredis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout, protocol=2)
        self._script: Any = self._redis.register_script(_SCRIPT)
        self._prefix = prefix

    async def hit(self, key: str, limit: Limit) -> Verdict:
        try:
            allowed, wait = await self._script(keys=[self._prefix + key], args=[limit.rate, limit.burst])
        except (RedisError, OSError, TimeoutError) as exc:
            raise LimiterUnavailable(str(exc)) from exc
        return Verdict(allowed=int(allowed) == 1, retry_after=float(wait))

    async def close(self) -> None:
        await self._redis.aclose()
