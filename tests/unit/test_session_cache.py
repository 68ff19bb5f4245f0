"""The session cache's pure core: bound, age, expiry, invalidation and the in-flight fill rule."""

from __future__ import annotations

import datetime as dt

import pytest

from bankhub.session_cache import SessionCache

T0 = dt.datetime(2026, 12, 7, 9, 0, tzinfo=dt.timezone.utc)
LATER = T0 + dt.timedelta(hours=12)


def _key(i: int) -> bytes:
    return i.to_bytes(32, "big")


def _fill(cache: SessionCache[str], i: int, user: str = "u1", *, now: float = 0.0, expires: dt.datetime = LATER) -> bool:
    return cache.fill(cache.begin(), _key(i), f"session-{i}", user, expires, now, T0)


def test_a_filled_session_is_answered_until_the_max_age() -> None:
    cache: SessionCache[str] = SessionCache(10, 60.0)
    assert cache.get(_key(1), 0.0, T0) is None
    assert _fill(cache, 1)
    assert cache.get(_key(1), 59.9, T0) == "session-1"
    assert cache.get(_key(1), 60.0, T0) is None  # too old: storage is asked again
    assert len(cache) == 0 and (cache.stats.hits, cache.stats.misses) == (1, 2)


def test_never_used_at_or_past_the_sessions_own_expiry() -> None:
    cache: SessionCache[str] = SessionCache(10, 60.0)
    soon = T0 + dt.timedelta(seconds=5)
    assert _fill(cache, 1, expires=soon)
    assert cache.get(_key(1), 4.9, T0) == "session-1"
    assert cache.get(_key(1), 5.0, T0) is None
    # the wall clock is checked as well: a jump forward ends the entry at once
    assert _fill(cache, 2, expires=soon)
    assert cache.get(_key(2), 1.0, soon) is None
    # a session already expired is not kept at all
    assert not _fill(cache, 3, expires=T0)
    assert cache.get(_key(3), 0.0, T0) is None


def test_bounded_least_recently_used_goes_first() -> None:
    cache: SessionCache[str] = SessionCache(3, 60.0)
    for i in range(3):
        _fill(cache, i, user=f"u{i}")
    assert cache.get(_key(0), 1.0, T0) == "session-0"  # 0 is now the most recently used
    _fill(cache, 3, user="u3")
    assert len(cache) == 3 and cache.stats.evictions == 1
    assert cache.get(_key(1), 1.0, T0) is None
    assert [cache.get(_key(i), 1.0, T0) for i in (0, 2, 3)] == ["session-0", "session-2", "session-3"]
    for i in range(4, 100):
        _fill(cache, i, user=f"u{i}")
    assert len(cache) == 3


def test_forget_user_drops_all_of_the_users_sessions_only() -> None:
    cache: SessionCache[str] = SessionCache(10, 60.0)
    _fill(cache, 1, "alice")
    _fill(cache, 2, "alice")
    _fill(cache, 3, "bob")
    assert cache.forget_user("alice") == 2
    assert cache.get(_key(1), 1.0, T0) is None and cache.get(_key(2), 1.0, T0) is None
    assert cache.get(_key(3), 1.0, T0) == "session-3"


def test_a_lookup_in_flight_across_a_revocation_does_not_fill() -> None:
    cache: SessionCache[str] = SessionCache(10, 60.0)
    ticket = cache.begin()  # the row is being read from storage ...
    cache.forget_user("alice")  # ... while the revocation's signal arrives
    assert not cache.fill(ticket, _key(1), "stale", "alice", LATER, 0.0, T0)
    assert cache.get(_key(1), 0.0, T0) is None and cache.stats.refused_fills == 1
    # another user's lookup in flight is unaffected; a lookup begun after the revocation fills
    assert cache.fill(ticket, _key(2), "bob's", "bob", LATER, 0.0, T0)
    assert cache.fill(cache.begin(), _key(3), "fresh", "alice", LATER, 0.0, T0)


def test_flush_drops_everything_and_refuses_fills_begun_before_it() -> None:
    cache: SessionCache[str] = SessionCache(10, 60.0)
    _fill(cache, 1, "alice")
    ticket = cache.begin()
    cache.flush()
    assert len(cache) == 0 and cache.get(_key(1), 0.0, T0) is None
    assert not cache.fill(ticket, _key(2), "stale", "bob", LATER, 0.0, T0)
    assert _fill(cache, 2, "bob")


def test_the_record_of_revocations_is_bounded_and_stays_safe_when_full() -> None:
    cache: SessionCache[str] = SessionCache(2, 60.0)
    ticket = cache.begin()
    for i in range(5000):  # far more revoked users than the record keeps
        cache.forget_user(f"user-{i}")
    assert len(cache._forgotten) <= 1024
    # "user-0"'s record was folded away: a lookup begun before it is still refused
    assert not cache.fill(ticket, _key(1), "stale", "user-0", LATER, 0.0, T0)
    assert _fill(cache, 1, "user-0")


def test_size_or_age_zero_turns_the_cache_off() -> None:
    for size, age in ((0, 60.0), (10, 0.0)):
        cache: SessionCache[str] = SessionCache(size, age)
        assert not cache.enabled
        assert not _fill(cache, 1)
        assert cache.get(_key(1), 0.0, T0) is None and len(cache) == 0
    with pytest.raises(ValueError):
        SessionCache(-1, 60.0)


def test_due_names_the_least_recently_checked_entries_and_confirm_moves_them_last() -> None:
    cache: SessionCache[str] = SessionCache(10, 60.0)
    for i in range(4):
        _fill(cache, i, user=f"u{i}")
    due = cache.due(2)
    assert due == [(_key(0), "session-0"), (_key(1), "session-1")]
    for key, principal in due:
        cache.confirm(key, principal)
    assert [k for k, _ in cache.due(10)] == [_key(2), _key(3), _key(0), _key(1)]
    # a confirmation of an entry replaced meanwhile does not count as its check
    principal = cache.due(1)[0][1]
    _fill(cache, 2, user="u2")
    cache.confirm(_key(2), principal)
    assert [k for k, _ in cache.due(10)] == [_key(3), _key(0), _key(1), _key(2)]
    cache.forget_user("u3")
    cache.get(_key(0), 61.0, T0)  # too old: dropped
    assert [k for k, _ in cache.due(10)] == [_key(1), _key(2)]
    cache.flush()
    assert cache.due(10) == []
