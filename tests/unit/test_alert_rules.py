"""Categories, preferences and quiet hours: what happens to an alert."""

from __future__ import annotations

import datetime as dt

import pytest

from bankhub.alerts.rules import (
    CATEGORIES,
    Preferences,
    PreferenceError,
    dispose,
    in_quiet_hours,
    make_preferences,
    parse_clock,
    quiet_hours_end,
)

UTC = dt.timezone.utc
NOON = dt.datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
AFTER = dt.timedelta(seconds=60)


def test_security_can_never_be_muted_and_unknown_categories_are_refused() -> None:
    with pytest.raises(PreferenceError, match="cannot be muted"):
        make_preferences(["security"], None, None, "UTC", "en")
    with pytest.raises(PreferenceError, match="unknown categories"):
        make_preferences(["spam"], None, None, "UTC", "en")
    with pytest.raises(PreferenceError, match="both"):
        make_preferences([], "22:00", None, "UTC", "en")
    with pytest.raises(PreferenceError, match="same time"):
        make_preferences([], "22:00", "22:00", "UTC", "en")
    with pytest.raises(PreferenceError, match="time zone"):
        make_preferences([], None, None, "Mars/Olympus", "en")
    with pytest.raises(PreferenceError, match="HH:MM"):
        parse_clock("24:00")
    p = make_preferences(["marketing"], "22:30", "07:00", "Asia/Shanghai", "zh-CN")
    assert p.quiet == (22 * 60 + 30, 7 * 60) and p.muted == {"marketing"}


@pytest.mark.parametrize("category", CATEGORIES)
def test_muting_suppresses_every_mutable_category_but_security_always_arrives(category: str) -> None:
    everything_muted = Preferences(muted=frozenset({"transaction", "service", "marketing", "security"}))
    d = dispose(category, "normal", everything_muted, NOON, fallback_after=AFTER)
    assert d.stored is (category == "security")
    assert d.reason == (None if category == "security" else "muted")


def test_quiet_hours_across_midnight() -> None:
    q = (22 * 60, 7 * 60)
    assert in_quiet_hours(q, 23 * 60) and in_quiet_hours(q, 0) and in_quiet_hours(q, 6 * 60 + 59)
    assert not in_quiet_hours(q, 7 * 60) and not in_quiet_hours(q, 12 * 60) and not in_quiet_hours(None, 0)
    assert in_quiet_hours((60, 120), 60) and not in_quiet_hours((60, 120), 120)


def test_quiet_hours_deliver_silently_and_hold_the_fallback_until_they_end() -> None:
    prefs = Preferences(quiet=(22 * 60, 7 * 60), timezone="Asia/Shanghai")
    night = dt.datetime(2026, 5, 1, 15, 30, tzinfo=UTC)  # 23:30 in Shanghai
    assert quiet_hours_end(prefs, night) == dt.datetime(2026, 5, 1, 23, 0, tzinfo=UTC)  # 07:00 there
    d = dispose("transaction", "high", prefs, night, fallback_after=AFTER)
    assert d.stored and d.silent and d.fallback_at == dt.datetime(2026, 5, 1, 23, 0, tzinfo=UTC)
    s = dispose("security", "high", prefs, night, fallback_after=AFTER)
    assert s.stored and not s.silent and s.fallback_at == night + AFTER
    day = dispose("transaction", "high", prefs, NOON, fallback_after=AFTER)  # 20:00 there
    assert not day.silent and day.fallback_at == NOON + AFTER


def test_quiet_hours_end_follows_the_wall_clock_across_a_dst_change() -> None:
    prefs = Preferences(quiet=(0, 4 * 60), timezone="Europe/London")
    # 2026-03-29: clocks go forward at 01:00 UTC; 00:30 local (UTC) -> 04:00 local is 03:00 UTC
    assert quiet_hours_end(prefs, dt.datetime(2026, 3, 29, 0, 30, tzinfo=UTC)) == dt.datetime(2026, 3, 29, 3, 0, tzinfo=UTC)


def test_fallback_rules() -> None:
    p = Preferences()
    assert dispose("transaction", "low", p, NOON, fallback_after=AFTER).fallback_at is None
    assert dispose("transaction", "high", p, NOON, fallback_after=None).fallback_at is None  # no channel
    soon = NOON + dt.timedelta(seconds=30)
    assert dispose("transaction", "high", p, NOON, fallback_after=AFTER, expires_at=soon).fallback_at is None
    later = NOON + dt.timedelta(seconds=90)
    assert dispose("transaction", "high", p, NOON, fallback_after=AFTER, expires_at=later).fallback_at == NOON + AFTER
