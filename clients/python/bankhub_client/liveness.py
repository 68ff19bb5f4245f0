"""Typing, presence and read positions (hub features ``typing``, ``presence``,
``receipts.privacy``): the frames, the HTTP calls, and the pure state behind them.

* :class:`TypingSender` — the debounced send helper: call :meth:`~TypingSender.input` on
  every keystroke and :meth:`~TypingSender.stop` when the text is sent or cleared; each
  returns whether a ``typing`` frame should go out now (at most one start per
  ``interval``, a stop only after a start). :meth:`Client.typing
  <bankhub_client.Client.typing>` sends it.
* :class:`TypingBoard` — who is typing where: feed it :class:`TypingEvent` and ask
  :meth:`~TypingBoard.typing` with the current time; an indicator not refreshed within its
  ``ttl_ms`` is gone (a lost "stopped" clears by itself).
* :class:`PresenceInfo` / :class:`PresenceEvent` — whether a related user is online
  (``online`` None: unknown or hidden); :meth:`Client.watch_presence
  <bankhub_client.Client.watch_presence>` asks and follows.
* :class:`LivenessApi` — ``GET``/``PUT /v1/me/privacy``, ``GET /v1/presence``,
  ``GET /v1/conversations/{id}/receipts`` (mixed into :class:`~bankhub_client.Api`).

Everything here is pure (times are passed in), so it is tested without sleeping.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from msgspec import Struct

from ._mixin import HttpMixin

__all__ = [
    "TypingFrame",
    "WatchPresenceFrame",
    "TypingEvent",
    "PresenceInfo",
    "PresenceEvent",
    "PresenceListFrame",
    "Privacy",
    "ReadPosition",
    "TypingSender",
    "TypingBoard",
    "LivenessApi",
]


# --- frames ------------------------------------------------------------------------


class TypingFrame(Struct, tag="typing", tag_field="type", omit_defaults=True):
    conversation_id: str
    active: bool
    id: str | None = None


class WatchPresenceFrame(Struct, tag="watch_presence", tag_field="type"):
    id: str
    user_ids: list[str]


class TypingEvent(Struct, tag="typing", tag_field="type", frozen=True):
    """Member ``user_id`` is typing (``active``) or stopped in ``conversation_id``."""

    conversation_id: str
    user_id: str
    active: bool
    ttl_ms: int


class PresenceInfo(Struct, frozen=True, omit_defaults=True):
    """A user's presence as I may see it: ``online`` None is unknown (unrelated, blocked,
    hidden); ``last_seen`` (ms) only while offline and if their setting shows it to me."""

    user_id: str
    online: bool | None = None
    last_seen: int | None = None


class PresenceEvent(Struct, tag="presence", tag_field="type", frozen=True, omit_defaults=True):
    """A user I watch came online or went offline."""

    user_id: str
    online: bool
    last_seen: int | None = None


class PresenceListFrame(Struct, tag="presence_list", tag_field="type"):
    id: str
    users: list[PresenceInfo]


# --- HTTP ----------------------------------------------------------------------------


class Privacy(Struct, frozen=True):
    """My privacy: ``share_read_receipts``; ``last_seen``: ``everyone``, ``contacts`` or ``nobody``."""

    share_read_receipts: bool
    last_seen: str


class ReadPosition(Struct, frozen=True):
    user_id: str
    read_seq: int


class _Presence(Struct):
    users: list[PresenceInfo]


class _Positions(Struct):
    conversation_id: str
    receipts: list[ReadPosition]


class LivenessApi(HttpMixin):
    """Privacy, presence and read positions over HTTP; mixed into :class:`~bankhub_client.Api`."""

    async def privacy(self) -> Privacy:
        """``GET /v1/me/privacy``."""
        found: Privacy = self._decode(await self._request("GET", "/v1/me/privacy"), Privacy)
        return found

    async def set_privacy(self, *, share_read_receipts: bool | None = None, last_seen: str | None = None) -> Privacy:
        """``PUT /v1/me/privacy``: change what is given, keep the rest."""
        body: dict[str, Any] = {}
        if share_read_receipts is not None:
            body["share_read_receipts"] = share_read_receipts
        if last_seen is not None:
            body["last_seen"] = last_seen
        found: Privacy = self._decode(await self._request("PUT", "/v1/me/privacy", json=body), Privacy)
        return found

    async def presence(self, user_ids: Sequence[str]) -> list[PresenceInfo]:
        """``GET /v1/presence``: related users' presence once (others: ``online`` None)."""
        if not user_ids:
            return []
        found: _Presence = self._decode(
            await self._request("GET", "/v1/presence", params={"user_ids": ",".join(user_ids)}), _Presence
        )
        return found.users

    async def read_positions(self, conversation_id: str) -> list[ReadPosition]:
        """``GET /v1/conversations/{id}/receipts``: the read positions I may see."""
        found: _Positions = self._decode(
            await self._request("GET", f"/v1/conversations/{conversation_id}/receipts"), _Positions
        )
        return found.receipts


# --- pure state ----------------------------------------------------------------------


class TypingSender:
    """When to send ``typing`` for one conversation (times in seconds, any monotonic clock).

    The hub forwards at most one start per member and conversation per its interval
    (3 s by default) and receivers expire an indicator after ``ttl_ms`` (6 s): sending a
    start on the first keystroke and again every ``interval`` while keys keep coming keeps
    the indicator on; :meth:`stop` sends one stop if a start went out.
    """

    __slots__ = ("interval", "_sent_at")

    def __init__(self, interval: float = 3.0) -> None:
        if interval <= 0:
            raise ValueError("interval must be positive")
        self.interval = interval
        self._sent_at: float | None = None

    def input(self, now: float) -> bool:
        """A keystroke at ``now``: True if a start should be sent."""
        if self._sent_at is not None and now - self._sent_at < self.interval:
            return False
        self._sent_at = now
        return True

    def stop(self) -> bool:
        """The text was sent or cleared: True if a stop should be sent."""
        was = self._sent_at is not None
        self._sent_at = None
        return was


class TypingBoard:
    """Who is typing in which conversation, from :class:`TypingEvent` (bounded: at most
    ``max_entries`` indicators; the oldest go first)."""

    __slots__ = ("max_entries", "_until")

    def __init__(self, max_entries: int = 1000) -> None:
        self.max_entries = max_entries
        self._until: dict[tuple[str, str], float] = {}

    def on_typing(self, event: TypingEvent, now: float) -> None:
        key = (event.conversation_id, event.user_id)
        self._until.pop(key, None)
        if event.active:
            self._until[key] = now + event.ttl_ms / 1000
            while len(self._until) > self.max_entries:
                del self._until[next(iter(self._until))]

    def clear(self, conversation_id: str, user_id: str) -> None:
        """``user_id`` sent a message: their indicator goes (as peers show it)."""
        self._until.pop((conversation_id, user_id), None)

    def typing(self, conversation_id: str, now: float) -> list[str]:
        """The users typing in ``conversation_id`` at ``now`` (expired ones are dropped)."""
        for key in [k for k, t in self._until.items() if t <= now]:
            del self._until[key]
        return [u for (c, u) in self._until if c == conversation_id]
