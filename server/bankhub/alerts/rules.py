"""Categories, customer preferences and quiet hours: what happens to one alert. Pure code.

Four categories:

* ``security`` — sign-ins, password changes: **never muted, never held by quiet hours**;
* ``transaction`` — money moved; ``service`` — statements, reminders; ``marketing`` — offers.
  A customer may opt out of each of these (the alert is then *suppressed*: recorded for
  the calling system, never shown or sent), and set quiet hours: alerts of these
  categories that arrive then are delivered *silently* (to the inbox and open devices,
  marked ``silent``) and the fallback channel (SMS, push gateway) waits until they end.

Priority (``high``, ``normal``, ``low``) travels with the alert for the device to present;
``low`` alerts never go to the fallback channel (it costs money and interrupts).
"""

from __future__ import annotations

import datetime as dt
import re
import zoneinfo
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = [
    "CATEGORIES",
    "MUTABLE",
    "PRIORITIES",
    "DEFAULT_TIMEZONE",
    "DEFAULT_LOCALE",
    "Preferences",
    "DEFAULT_PREFERENCES",
    "Disposition",
    "PreferenceError",
    "parse_clock",
    "format_clock",
    "make_preferences",
    "in_quiet_hours",
    "quiet_hours_end",
    "dispose",
]

CATEGORIES = ("security", "transaction", "service", "marketing")
MUTABLE = frozenset({"transaction", "service", "marketing"})
PRIORITIES = ("high", "normal", "low")
DEFAULT_TIMEZONE = "Asia/Shanghai"
DEFAULT_LOCALE = "zh-CN"
_CLOCK = re.compile(r"^([01][0-9]|2[0-3]):([0-5][0-9])$")


class PreferenceError(ValueError):
    """Preferences a customer may not set (muting security alerts, a bad time zone, ...)."""


@dataclass(frozen=True, slots=True)
class Preferences:
    """A customer's choices. ``quiet`` is (start, end) in minutes after local midnight."""

    muted: frozenset[str] = frozenset()
    quiet: tuple[int, int] | None = None
    timezone: str = DEFAULT_TIMEZONE
    locale: str = DEFAULT_LOCALE


DEFAULT_PREFERENCES = Preferences()


def parse_clock(value: str) -> int:
    """``"22:30"`` -> 1350 (minutes after midnight)."""
    m = _CLOCK.fullmatch(value)
    if m is None:
        raise PreferenceError(f"{value[:16]!r} is not a time of day HH:MM (00:00-23:59)")
    return int(m.group(1)) * 60 + int(m.group(2))


def format_clock(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def make_preferences(
    muted: Iterable[str], quiet_start: str | None, quiet_end: str | None, timezone: str, locale: str
) -> Preferences:
    """Validated preferences from what a customer sent; raises :class:`PreferenceError`."""
    chosen = frozenset(muted)
    if "security" in chosen:
        raise PreferenceError("security alerts cannot be muted")
    unknown = chosen - MUTABLE
    if unknown:
        raise PreferenceError(f"unknown categories {sorted(c[:32] for c in unknown)}; mutable: {sorted(MUTABLE)}")
    if (quiet_start is None) != (quiet_end is None):
        raise PreferenceError("quiet hours need both a start and an end (or neither)")
    quiet = None
    if quiet_start is not None and quiet_end is not None:
        quiet = (parse_clock(quiet_start), parse_clock(quiet_end))
        if quiet[0] == quiet[1]:
            raise PreferenceError("quiet hours must not start and end at the same time")
    try:
        zoneinfo.ZoneInfo(timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise PreferenceError(f"unknown time zone {timezone[:64]!r} (use an IANA name such as Asia/Shanghai)") from None
    if locale not in ("zh-CN", "en"):
        raise PreferenceError("locale must be zh-CN or en")
    return Preferences(muted=chosen, quiet=quiet, timezone=timezone, locale=locale)


def _local(now: dt.datetime, timezone: str) -> dt.datetime:
    try:
        zone: dt.tzinfo = zoneinfo.ZoneInfo(timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        zone = zoneinfo.ZoneInfo(DEFAULT_TIMEZONE)
    return now.astimezone(zone)


def in_quiet_hours(quiet: tuple[int, int] | None, minute_of_day: int) -> bool:
    """Whether a local time (minutes after midnight) falls in ``[start, end)``, across midnight too."""
    if quiet is None:
        return False
    start, end = quiet
    if start < end:
        return start <= minute_of_day < end
    return minute_of_day >= start or minute_of_day < end


def quiet_hours_end(prefs: Preferences, now: dt.datetime) -> dt.datetime | None:
    """When the quiet hours ``now`` falls in end (UTC), or None when ``now`` is not in them."""
    local = _local(now, prefs.timezone)
    minute = local.hour * 60 + local.minute
    if prefs.quiet is None or not in_quiet_hours(prefs.quiet, minute):
        return None
    end = prefs.quiet[1]
    ahead = (end - minute) % (24 * 60) or 24 * 60
    # wall-clock minutes ahead, computed in local time so a DST change is honoured
    naive = local.replace(tzinfo=None, second=0, microsecond=0) + dt.timedelta(minutes=ahead)
    return naive.replace(tzinfo=local.tzinfo).astimezone(dt.timezone.utc)


@dataclass(frozen=True, slots=True)
class Disposition:
    """What to do with one alert for one recipient.

    ``stored``: it enters the inbox (False: suppressed, ``reason`` says why). ``silent``:
    it arrived in quiet hours. ``fallback_at``: when to hand it to the fallback channel if
    no device has had it by then (None: never).
    """

    stored: bool
    silent: bool = False
    fallback_at: dt.datetime | None = None
    reason: str | None = None


def dispose(
    category: str,
    priority: str,
    prefs: Preferences,
    now: dt.datetime,
    *,
    fallback_after: dt.timedelta | None,
    expires_at: dt.datetime | None = None,
) -> Disposition:
    """Apply the customer's preferences to an alert arriving at ``now`` (UTC).

    ``fallback_after`` is how long an alert may wait for an online device before the
    fallback channel takes it (None: no fallback channel configured).
    """
    if category not in CATEGORIES:
        raise ValueError(f"unknown category {category!r}")
    if category in MUTABLE and category in prefs.muted:
        return Disposition(stored=False, reason="muted")
    quiet_end = quiet_hours_end(prefs, now) if category in MUTABLE else None
    silent = quiet_end is not None
    fallback_at: dt.datetime | None = None
    if fallback_after is not None and priority != "low":
        fallback_at = now + fallback_after
        if quiet_end is not None and quiet_end > fallback_at:
            fallback_at = quiet_end
        if expires_at is not None and expires_at <= fallback_at:
            fallback_at = None  # it would expire before the channel could send it
    return Disposition(stored=True, silent=silent, fallback_at=fallback_at)
