"""The fallback channel's retry schedule."""

from __future__ import annotations

import pytest

from bankhub.alerts.retry import DeadLetter, Retry, RetryPolicy, next_step


def test_backoff_doubles_up_to_the_cap() -> None:
    p = RetryPolicy(base=5, cap=60, max_attempts=10, jitter=0.0)
    assert [p.delay(n) for n in range(1, 7)] == [5, 10, 20, 40, 60, 60]


def test_jitter_only_ever_shortens_a_delay_and_by_at_most_its_share() -> None:
    p = RetryPolicy(base=10, cap=100, jitter=0.2)
    assert p.delay(1, 0.0) == 10 and p.delay(1, 0.999) == pytest.approx(8.002)
    assert all(8 <= p.delay(1, r / 100) <= 10 for r in range(100))


def test_retry_until_the_last_attempt_then_dead_letter() -> None:
    p = RetryPolicy(base=1, cap=8, max_attempts=3, jitter=0)
    assert next_step(p, 1, permanent=False, error="HTTP 503") == Retry(1.0)
    assert next_step(p, 2, permanent=False, error="HTTP 503") == Retry(2.0)
    step = next_step(p, 3, permanent=False, error="HTTP 503")
    assert isinstance(step, DeadLetter) and step.reason == "gave up after 3 attempts: HTTP 503"


def test_a_permanent_refusal_is_dead_at_once() -> None:
    step = next_step(RetryPolicy(), 1, permanent=True, error="HTTP 400")
    assert isinstance(step, DeadLetter) and "permanently" in step.reason


@pytest.mark.parametrize("kw", [{"base": 0}, {"base": 5, "cap": 1}, {"max_attempts": 0}, {"jitter": 1.0}])
def test_nonsense_policies_are_refused(kw: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        RetryPolicy(**kw)  # type: ignore[arg-type]
