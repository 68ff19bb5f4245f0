"""Sans-I/O rules of the live-only signals: the typing debounce.

:class:`TypingGate` decides, for each ``typing`` frame a member sends, whether the node
forwards it. Time is passed in (a monotonic clock in seconds), so the rules are tested
without sleeping. Nothing here is stored: a node that restarts forgets every state, and
receivers clear an indicator that is not refreshed within its ``ttl`` anyway.
"""

from __future__ import annotations

from collections import OrderedDict

__all__ = ["TypingGate", "FORWARD", "DROP", "FULL"]

FORWARD = "forward"
"""Forward the frame to the other members."""
DROP = "drop"
"""Debounced: nothing new to tell (a repeat within the interval, a stop with no start)."""
FULL = "full"
"""The gate tracks its maximum of states and none has expired: refuse (rate limited)."""


class TypingGate:
    """At most one forwarded ``typing`` (active) per key per ``interval`` seconds.

    A key is ``(conversation_id, user_id)``. ``active`` true is forwarded when the key is
    not typing yet, or its last forward is ``interval`` or more ago (a refresh: receivers
    expire an indicator after ``ttl``). ``active`` false is forwarded only when a start was
    forwarded within ``ttl`` (nothing to clear otherwise); it ends the state. States older
    than ``ttl`` count as stopped and are dropped. At most ``max_tracked`` keys are kept,
    oldest forward first out, so the memory is bounded whatever clients send.
    """

    __slots__ = ("interval", "ttl", "max_tracked", "_since")

    def __init__(self, *, interval: float, ttl: float, max_tracked: int) -> None:
        if interval <= 0 or ttl < interval or max_tracked < 1:
            raise ValueError("need 0 < interval <= ttl and max_tracked >= 1")
        self.interval = interval
        self.ttl = ttl
        self.max_tracked = max_tracked
        # key -> time of the last forwarded start, oldest first
        self._since: OrderedDict[tuple[str, str], float] = OrderedDict()

    def __len__(self) -> int:
        return len(self._since)

    def offer(self, key: tuple[str, str], active: bool, now: float) -> str:
        """:data:`FORWARD`, :data:`DROP` or :data:`FULL` for one frame at time ``now``."""
        self._expire(now)
        last = self._since.get(key)
        if not active:
            if last is None:
                return DROP
            del self._since[key]
            return FORWARD
        if last is not None and now - last < self.interval:
            return DROP
        if last is None and len(self._since) >= self.max_tracked:
            return FULL
        self._since[key] = now
        self._since.move_to_end(key)
        return FORWARD

    def forget(self, key: tuple[str, str]) -> None:
        """Drop ``key``'s state (its frame was refused after all: not a member)."""
        self._since.pop(key, None)

    def _expire(self, now: float) -> None:
        since = self._since
        while since:
            key, at = next(iter(since.items()))
            if now - at < self.ttl:
                return
            del since[key]
