"""The fallback channel's retry schedule: exponential backoff with a cap. Pure code.

Attempt ``n`` (1-based) that fails with a retryable error is tried again after
``min(cap, base * 2**(n-1))`` seconds, shortened by up to ``jitter`` of itself so that
many alerts failing together do not retry in lock-step. After ``max_attempts`` attempts,
or at once for a permanent refusal, the alert goes to the dead-letter list, from which an
operator can replay it.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["RetryPolicy", "Retry", "DeadLetter", "Step", "next_step"]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    base: float = 5.0  # seconds before the second attempt
    cap: float = 600.0  # longest wait between attempts
    max_attempts: int = 6
    jitter: float = 0.2  # fraction of a delay taken off at random

    def __post_init__(self) -> None:
        if self.base <= 0 or self.cap < self.base or self.max_attempts < 1 or not 0 <= self.jitter < 1:
            raise ValueError("retry policy: want 0 < base <= cap, max_attempts >= 1, 0 <= jitter < 1")

    def delay(self, attempt: int, rand: float = 0.0) -> float:
        """Seconds to wait after failed attempt ``attempt`` (1-based); ``rand`` in [0, 1)."""
        raw = min(self.cap, self.base * 2.0 ** (attempt - 1))
        return raw * (1.0 - self.jitter * rand)


@dataclass(frozen=True, slots=True)
class Retry:
    delay: float


@dataclass(frozen=True, slots=True)
class DeadLetter:
    reason: str


Step = Retry | DeadLetter


def next_step(policy: RetryPolicy, attempts: int, *, permanent: bool, error: str, rand: float = 0.0) -> Step:
    """After ``attempts`` attempts, the last failing with ``error``: retry later, or give up."""
    if permanent:
        return DeadLetter(f"refused permanently: {error}")
    if attempts >= policy.max_attempts:
        return DeadLetter(f"gave up after {attempts} attempts: {error}")
    return Retry(policy.delay(attempts, rand))
