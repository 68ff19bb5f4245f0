"""Business hours of a service queue. Pure (the clock is an argument).

A queue is open on the ISO weekdays ``days`` (1 = Monday … 7 = Sunday) from
``open_minute`` to ``close_minute`` (minutes after local midnight, in ``timezone``;
``close_minute`` 1440 is midnight at the end of the day). A window whose close is not
after its open runs past midnight: ``22:00``–``06:00`` on Friday is open from Friday
22:00 to Saturday 06:00. ``days`` empty means never open.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from dataclasses import dataclass

__all__ = ["BusinessHours", "parse_hhmm", "format_hhmm", "ALL_DAYS"]

ALL_DAYS = (1, 2, 3, 4, 5, 6, 7)
_DAY_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def parse_hhmm(value: str) -> int:
    """``"09:30"`` -> 570; ``"24:00"`` -> 1440. Raises ValueError otherwise."""
    hours, sep, minutes = value.partition(":")
    if not sep or not hours.isdigit() or not minutes.isdigit() or len(minutes) != 2:
        raise ValueError(f"not a HH:MM time: {value!r}")
    total = int(hours) * 60 + int(minutes)
    if int(minutes) >= 60 or not 0 <= total <= 1440:
        raise ValueError(f"not a time of day: {value!r}")
    return total


def format_hhmm(minute: int) -> str:
    return f"{minute // 60:02d}:{minute % 60:02d}"


@dataclass(frozen=True, slots=True)
class BusinessHours:
    timezone: str = "Asia/Shanghai"
    days: tuple[int, ...] = ALL_DAYS
    open_minute: int = 0
    close_minute: int = 1440

    def validate(self) -> None:
        """Raise ValueError for an unknown time zone, weekday or minute."""
        try:
            zoneinfo.ZoneInfo(self.timezone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {self.timezone!r}") from None
        if any(d not in ALL_DAYS for d in self.days):
            raise ValueError("days are ISO weekdays, 1 (Monday) to 7 (Sunday)")
        if not 0 <= self.open_minute <= 1439 or not 1 <= self.close_minute <= 1440:
            raise ValueError("open is 00:00-23:59 and close 00:01-24:00")

    @property
    def _tz(self) -> zoneinfo.ZoneInfo:
        return zoneinfo.ZoneInfo(self.timezone)

    @property
    def overnight(self) -> bool:
        return self.close_minute <= self.open_minute

    def is_open(self, now: dt.datetime) -> bool:
        """Whether the queue is open at ``now`` (an aware datetime)."""
        local = now.astimezone(self._tz)
        day, minute = local.isoweekday(), local.hour * 60 + local.minute
        if not self.overnight:
            return day in self.days and self.open_minute <= minute < self.close_minute
        yesterday = 7 if day == 1 else day - 1
        return (day in self.days and minute >= self.open_minute) or (yesterday in self.days and minute < self.close_minute)

    def next_open(self, now: dt.datetime) -> dt.datetime | None:
        """``now`` if open, else when the queue next opens (local time); None if never."""
        if self.is_open(now):
            return now.astimezone(self._tz)
        local = now.astimezone(self._tz)
        for offset in range(8):
            day = local.date() + dt.timedelta(days=offset)
            if day.isoweekday() not in self.days:
                continue
            opens = dt.datetime.combine(
                day, dt.time(self.open_minute // 60, self.open_minute % 60), tzinfo=self._tz
            )
            if opens > local:
                return opens
        return None

    def describe(self) -> str:
        """A short human form, e.g. ``"Mon-Fri 09:00-18:00 (Asia/Shanghai)"``."""
        if not self.days:
            return "closed"
        days = sorted(set(self.days))
        if days == list(ALL_DAYS):
            when = "every day"
        elif days == list(range(days[0], days[-1] + 1)) and len(days) > 2:
            when = f"{_DAY_NAMES[days[0] - 1]}-{_DAY_NAMES[days[-1] - 1]}"
        else:
            when = ", ".join(_DAY_NAMES[d - 1] for d in days)
        if self.open_minute == 0 and self.close_minute == 1440:
            return f"{when}, 24 hours"
        return f"{when} {format_hhmm(self.open_minute)}-{format_hhmm(self.close_minute)} ({self.timezone})"
