"""Delivery cursors: where each stream stands, for exactly-once, in-order delivery over a lossy signal bus.

Broker signals may arrive late, out of order, twice or never. A cursor is, per key (a
conversation, an account, an inbox), the highest seq handed over. These are the positions
alone; :class:`~bankhub.protocol.streams.StreamFollower` builds on them (it holds the
items that wait while a gap is fetched). For each signalled seq :meth:`DeliveryCursors.offer` answers:

* ``DELIVER``   — it is the next seq: send it (the cursor advances);
* ``DUPLICATE`` — the client already has it: drop it;
* ``GAP``       — seqs are missing in between: fetch ``(cursor, seq]`` from storage, then
  call :meth:`advance` for each fetched message in order.

A conversation the connection has no cursor for yet starts at the first seq it sees,
unless the client declared its position through ``sync`` (:meth:`set`).

:meth:`revoke` cuts a conversation off (its member lost access: a handover, a closed
service session): from then on every signal of it is dropped and no gap is filled, even
for messages committed before the change whose signals arrive late. :meth:`restore`
undoes it when access comes back.
"""

from __future__ import annotations

import enum

__all__ = ["Verdict", "DeliveryCursors"]


class Verdict(enum.Enum):
    DELIVER = "deliver"
    DUPLICATE = "duplicate"
    GAP = "gap"


class DeliveryCursors:
    __slots__ = ("_pos", "_revoked")

    def __init__(self) -> None:
        self._pos: dict[str, int] = {}
        self._revoked: set[str] = set()

    def get(self, conversation_id: str) -> int | None:
        return self._pos.get(conversation_id)

    def set(self, conversation_id: str, seq: int) -> None:
        """Declare that the client holds everything up to ``seq`` (never moves backwards)."""
        if self._revoked and conversation_id in self._revoked:
            return
        if seq > self._pos.get(conversation_id, -1):
            self._pos[conversation_id] = seq

    def offer(self, conversation_id: str, seq: int) -> Verdict:
        if self._revoked and conversation_id in self._revoked:
            return Verdict.DUPLICATE  # access was revoked: drop, never fetch
        pos = self._pos.get(conversation_id)
        if pos is None or seq == pos + 1:
            self._pos[conversation_id] = seq
            return Verdict.DELIVER
        if seq <= pos:
            return Verdict.DUPLICATE
        return Verdict.GAP

    def advance(self, conversation_id: str, seq: int) -> bool:
        """Record a message fetched to fill a gap. True if it is new to the client."""
        if self._revoked and conversation_id in self._revoked:
            return False
        pos = self._pos.get(conversation_id, 0)
        if seq <= pos:
            return False
        self._pos[conversation_id] = seq
        return True

    def snapshot(self) -> dict[str, int]:
        return dict(self._pos)

    def revoke(self, conversation_id: str) -> None:
        """Stop delivering ``conversation_id``: drop its cursor and every later signal of it."""
        self._pos.pop(conversation_id, None)
        self._revoked.add(conversation_id)

    def restore(self, conversation_id: str) -> None:
        """Access came back: deliver ``conversation_id`` again, from the first seq seen."""
        self._revoked.discard(conversation_id)

    def revoked(self, conversation_id: str) -> bool:
        return conversation_id in self._revoked
