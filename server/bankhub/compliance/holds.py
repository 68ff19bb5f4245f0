"""Legal holds, pure: what a hold is, what makes one valid, what it holds, and its state.

A hold keeps messages from purge and crypto-shredding while a case is open. It names a
custodian (a user), a conversation, or both, and optionally a date range:

* ``custodian``: every message of every conversation the custodian was EVER a member of
  (the membership history, ``membership_log``: one who left is still covered, for all the
  conversation's messages, before and after their stay — a custodian's case may turn on
  what was said around them, and the export shows who could read what);
* ``conversation``: every message of that conversation;
* both: the conversation's messages, if the custodian was ever a member of it;
* ``from``/``to``: only messages with ``from <= created_at < to`` (from inclusive, to
  exclusive; either may be open).

A hold is ACTIVE until a second compliance officer approves its release; a requested
release keeps it active (``release_pending``). :func:`holds_message` is the rule;
``bankhub.storage.holds.HELD_MESSAGE_SQL`` is the same rule in SQL.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection
from dataclasses import dataclass
from typing import Literal

from .. import text

__all__ = [
    "MAX_NAME_CHARS",
    "MAX_CASE_REF_CHARS",
    "MAX_REASON_CHARS",
    "HOLD_STATES",
    "HoldState",
    "HoldInvalid",
    "HoldScope",
    "validate_hold",
    "validate_release_reason",
    "holds_message",
    "hold_state",
]

MAX_NAME_CHARS = 120
MAX_CASE_REF_CHARS = 64
MAX_REASON_CHARS = 500

HoldState = Literal["active", "release_pending", "released"]
HOLD_STATES: tuple[HoldState, ...] = ("active", "release_pending", "released")


class HoldInvalid(ValueError):
    """A hold (or a release request) that may not exist; the message says why, for the caller."""


@dataclass(frozen=True)
class HoldScope:
    """What a hold covers: ids are canonical UUID strings, times aware datetimes."""

    custodian_id: str | None
    conversation_id: str | None
    from_at: dt.datetime | None = None
    to_at: dt.datetime | None = None


def _line(value: str, what: str, max_chars: int) -> str:
    if not 1 <= len(value) <= max_chars:
        raise HoldInvalid(f"{what} must be 1-{max_chars} characters")
    if not text.is_line(value) or not value.strip():
        raise HoldInvalid(f"{what} must be a single line of printable text")
    return value


def _aware(value: dt.datetime | None, what: str) -> None:
    if value is None:
        return
    if value.tzinfo is None or value.utcoffset() is None:
        raise HoldInvalid(f"{what} must carry a time zone offset (RFC 3339)")
    try:
        # 0001-01-01T00:00:00+01:00 is valid RFC 3339, but its UTC instant is before year 1
        value.astimezone(dt.timezone.utc)
    except OverflowError:
        raise HoldInvalid(f"{what} is out of range") from None


def validate_hold(name: str, case_ref: str | None, scope: HoldScope) -> None:
    """Raise :class:`HoldInvalid` unless a hold of this name, case reference and scope may be
    placed: a name of 1-120 characters of printable text (one line, not blank), a case
    reference of at most 64, at least one of custodian and conversation, and ``from``
    before ``to`` when both are given (times with an offset)."""
    _line(name, "name", MAX_NAME_CHARS)
    if case_ref is not None:
        _line(case_ref, "case_ref", MAX_CASE_REF_CHARS)
    if scope.custodian_id is None and scope.conversation_id is None:
        raise HoldInvalid("a hold names a custodian, a conversation, or both")
    _aware(scope.from_at, "from")
    _aware(scope.to_at, "to")
    if scope.from_at is not None and scope.to_at is not None and not scope.from_at < scope.to_at:
        raise HoldInvalid("from must be before to")


def validate_release_reason(reason: str) -> str:
    """The reason for releasing a hold (required: 1-500 characters, one line, not blank)."""
    return _line(reason, "reason", MAX_REASON_CHARS)


def holds_message(
    scope: HoldScope,
    *,
    conversation_id: str,
    created_at: dt.datetime,
    ever_members: Collection[str],
    released: bool = False,
) -> bool:
    """Whether a hold of ``scope`` holds the message sent at ``created_at`` in
    ``conversation_id``, whose members were ever ``ever_members`` (user ids, from the
    membership history). A released hold holds nothing."""
    if released:
        return False
    if scope.conversation_id is not None and scope.conversation_id != conversation_id:
        return False
    if scope.custodian_id is not None and scope.custodian_id not in ever_members:
        return False
    if scope.from_at is not None and created_at < scope.from_at:
        return False
    if scope.to_at is not None and created_at >= scope.to_at:
        return False
    return True


def hold_state(*, released: bool, release_requested: bool) -> HoldState:
    """``released`` once approved; ``release_pending`` while a request waits; else ``active``."""
    if released:
        return "released"
    return "release_pending" if release_requested else "active"
