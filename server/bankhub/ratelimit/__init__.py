"""Cluster-wide rate limits: one interface, an in-memory and a Redis implementation."""

from .base import Limit, LimiterUnavailable, RateLimiter, Verdict
from .memory import MemoryRateLimiter
from .redis import RedisRateLimiter

__all__ = ["Limit", "LimiterUnavailable", "RateLimiter", "Verdict", "MemoryRateLimiter", "RedisRateLimiter", "make_limiter"]


def make_limiter(redis_url: str | None) -> RateLimiter:
    return RedisRateLimiter(redis_url) if redis_url else MemoryRateLimiter()
