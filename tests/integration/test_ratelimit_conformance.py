"""One conformance suite for both rate limiters: in-memory and Redis/Valkey."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest

from bankhub.ratelimit import Limit, LimiterUnavailable, MemoryRateLimiter, RateLimiter, RedisRateLimiter

from ..support.valkey import free_port


@pytest.fixture(params=["memory", "redis"])
async def limiter(request: pytest.FixtureRequest, valkey_url: str) -> AsyncIterator[RateLimiter]:
    lim: RateLimiter = MemoryRateLimiter() if request.param == "memory" else RedisRateLimiter(valkey_url)
    yield lim
    await lim.close()


def _key() -> str:
    return f"k-{uuid.uuid4().hex}"


async def test_burst_is_allowed_then_refused_with_a_retry_delay(limiter: RateLimiter) -> None:
    key, limit = _key(), Limit(rate=0.5, burst=3)
    verdicts = [await limiter.hit(key, limit) for _ in range(4)]
    assert [v.allowed for v in verdicts] == [True, True, True, False]
    assert 1.0 < verdicts[3].retry_after <= 2.0


async def test_tokens_come_back_at_the_rate(limiter: RateLimiter) -> None:
    # 2 tokens/s: the second hit is refused if it comes within 0.5 s, which two round trips
    # do even on a loaded machine
    key, limit = _key(), Limit(rate=2.0, burst=1)
    assert (await limiter.hit(key, limit)).allowed
    assert not (await limiter.hit(key, limit)).allowed
    await asyncio.sleep(0.6)
    assert (await limiter.hit(key, limit)).allowed


async def test_keys_are_independent(limiter: RateLimiter) -> None:
    limit = Limit(rate=0.01, burst=1)
    a, b = _key(), _key()
    assert (await limiter.hit(a, limit)).allowed
    assert not (await limiter.hit(a, limit)).allowed
    assert (await limiter.hit(b, limit)).allowed


async def test_concurrent_hits_never_exceed_the_burst(limiter: RateLimiter) -> None:
    key, limit = _key(), Limit(rate=0.001, burst=10)
    verdicts = await asyncio.gather(*(limiter.hit(key, limit) for _ in range(60)))
    assert sum(v.allowed for v in verdicts) == 10


async def test_two_redis_limiters_share_one_bucket(valkey_url: str) -> None:
    a, b = RedisRateLimiter(valkey_url), RedisRateLimiter(valkey_url)
    key, limit = _key(), Limit(rate=0.001, burst=4)
    try:
        verdicts = [await (a if i % 2 else b).hit(key, limit) for i in range(6)]
    finally:
        await a.close()
        await b.close()
    assert [v.allowed for v in verdicts] == [True] * 4 + [False] * 2


async def test_redis_outage_is_reported_not_guessed() -> None:
    lim = RedisRateLimiter(f"redis://127.0.0.1:{free_port()}")
    try:
        with pytest.raises(LimiterUnavailable):
            await asyncio.wait_for(lim.hit(_key(), Limit(1, 1)), 5)
    finally:
        await lim.close()
