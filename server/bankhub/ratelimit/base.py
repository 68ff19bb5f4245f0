"""Rate limiting shared by the nodes of a cluster: the interface.

``hit(key, rate, burst)`` takes one token from the bucket named ``key`` (refilled at
``rate`` tokens per second, holding at most ``burst``) and answers whether the caller may
proceed and, if not, after how many seconds it may retry.

When the limiter's store is unreachable, ``hit`` raises :class:`LimiterUnavailable`; each
caller decides whether to *fail closed* (credential checks: login, tickets, password
changes — refuse) or *fail open* (conveniences such as typing or presence — allow).
"""

from __future__ import annotations

import abc
from dataclasses import dataclass

__all__ = ["Limit", "RateLimiter", "LimiterUnavailable", "Verdict"]


class LimiterUnavailable(Exception):
    """The shared store behind the limiter could not be reached."""


@dataclass(frozen=True, slots=True)
class Limit:
    rate: float  # tokens per second
    burst: int


@dataclass(frozen=True, slots=True)
class Verdict:
    allowed: bool
    retry_after: float = 0.0


class RateLimiter(abc.ABC):
    @abc.abstractmethod
    async def hit(self, key: str, limit: Limit) -> Verdict:
        """Take one token from bucket ``key``."""

    async def close(self) -> None:
        """Release connections. Idempotent."""
