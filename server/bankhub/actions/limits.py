"""The rate limits the hub enforces, and how a limiter outage is treated per limit.

Credential checks (sign-in, tickets, password changes) *fail closed*: if the shared
limiter cannot be reached they are refused with ``unavailable``, because an attacker
who can knock the limiter over must not thereby get unlimited password guesses.
Conveniences fail open.
"""

from __future__ import annotations


from ..hub import Hub
from ..ratelimit import Limit, LimiterUnavailable
from .errors import ActionError

__all__ = ["LOGIN_PER_IP", "LOGIN_PER_USERNAME", "TICKETS_PER_USER", "PASSWORD_PER_USER", "API_PER_USER", "HANDSHAKES_PER_IP", "AUDIT_VERIFY_PER_USER", "enforce"]

LOGIN_PER_IP = Limit(rate=0.5, burst=20)  # 30 a minute from one address, bursts of 20
LOGIN_PER_USERNAME = Limit(rate=0.1, burst=10)  # 6 a minute against one account
TICKETS_PER_USER = Limit(rate=1.0, burst=10)
PASSWORD_PER_USER = Limit(rate=0.02, burst=3)
API_PER_USER = Limit(rate=20.0, burst=60)
HANDSHAKES_PER_IP = Limit(rate=20.0, burst=100)
# a whole-chain audit verification walks every row: 3 in a row, then one every 20 s per officer
AUDIT_VERIFY_PER_USER = Limit(rate=0.05, burst=3)


async def enforce(hub: Hub, key: str, limit: Limit, *, fail_closed: bool) -> None:
    """Raise ``rate_limited`` (with the retry delay) when bucket ``key`` is empty."""
    try:
        verdict = await hub.limiter.hit(key, limit)
    except LimiterUnavailable:
        if fail_closed:
            raise ActionError("unavailable", "rate limiter unavailable; credential checks are paused, retry shortly") from None
        return
    if not verdict.allowed:
        raise ActionError("rate_limited", "too many requests; slow down", retry_after=verdict.retry_after)
