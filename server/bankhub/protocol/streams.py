"""Following seq-numbered streams over a lossy signal bus, without I/O.

A stream is a run of items numbered 1, 2, 3, ... under a key: a conversation's messages,
an official account's events, a user's alert inbox. Items arrive live (broker signals:
late, out of order, twice or never) and can be read back from storage by range. A
:class:`StreamFollower` turns that into delivery in order and once per key. Each item is
offered with :meth:`~StreamFollower.offer`, which answers:

* :attr:`Decision.DELIVER` — it is the next seq: hand it over now (the position moved);
* :attr:`Decision.DROP`    — already held (a duplicate or a late signal), or the key is
  cut off (:meth:`~bankhub.protocol.cursors.DeliveryCursors.revoke`);
* :attr:`Decision.HOLD`    — a fill is in flight for the key: the item is kept and comes
  out of :meth:`~StreamFollower.filled` in order;
* a :class:`Fetch`         — seqs are missing before it: the item is kept, read storage's
  ``(after, upto]`` and feed the rows to :meth:`~StreamFollower.filled` (or report
  :meth:`~StreamFollower.failed`).

:meth:`~StreamFollower.filled` answers a :class:`Filled`: the items to hand over now, in
order, and the next :class:`Fetch` while something is still missing. At most one fill
per key is in flight; every item offered meanwhile is held, so nothing overtakes the hole.

Two kinds of stream differ only in what a fetch that comes back short means:

* gap-free (``gap_free=True``, messages and notices): seqs are allocated and committed in
  order, so a missing seq above everything a read returned is not in storage *yet* (or the
  read failed): the hole stays, what follows it stays held, and the same hole is fetched
  again up to the highest held seq, one ``attempt`` later (the caller waits longer each
  attempt). A seq missing *below* a returned row was committed before that row and has
  since been deleted (the retention purge): the follower steps over it;
* sparse (``gap_free=False``, alerts): storage returns only what may still be shown
  (expired and replaced alerts are left out), so a fetched range is complete: the
  position moves to ``upto`` and the held items are offered again. A failed read is
  retried for the same range, one ``attempt`` later, with the items still held.

Positions are a :class:`~bankhub.protocol.cursors.DeliveryCursors` (:attr:`StreamFollower.cursors`):
a key has none until its first item or until the client declares one (``set``, after a
sync); a position only moves forward; a revoked key drops every item and fills nothing.

Memory: a key has state only once it has a position or a fill in flight; held items are
released by the fill that holds them. Nothing here is sized by client input.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Generic, TypeVar

from .cursors import DeliveryCursors, Verdict

__all__ = ["Decision", "Fetch", "Filled", "StreamFollower"]

T = TypeVar("T")


class Decision(enum.Enum):
    """What to do with one offered item (the fourth answer is a :class:`Fetch`)."""

    DELIVER = "deliver"
    HOLD = "hold"
    DROP = "drop"


# bound once: offer runs for every signalled item, and an enum attribute lookup costs
_DELIVER, _HOLD, _DROP = Decision.DELIVER, Decision.HOLD, Decision.DROP
_NEXT, _HELD_ALREADY = Verdict.DELIVER, Verdict.DUPLICATE


@dataclass(frozen=True, slots=True)
class Fetch:
    """Read the items of ``key`` with ``after < seq <= upto`` (``upto`` None: to the end).

    ``attempt`` counts the tries of this hole before this one (0: the first): the caller
    waits before a retry, longer the higher it is.
    """

    key: str
    after: int
    upto: int | None
    attempt: int = 0


@dataclass(frozen=True, slots=True)
class Filled(Generic[T]):
    """The answer to a fetch: hand ``deliver`` over in this order, then run ``fetch`` if set."""

    deliver: list[T]
    fetch: Fetch | None


class StreamFollower(Generic[T]):
    """In-order, exactly-once delivery of items of type ``T`` per key; ``seq`` reads an item's seq."""

    __slots__ = ("cursors", "_seq", "_gap_free", "_held")

    def __init__(self, seq: Callable[[T], int], *, gap_free: bool = True) -> None:
        self.cursors = DeliveryCursors()
        self._seq = seq
        self._gap_free = gap_free
        # key -> the items offered while its fill is in flight (a key is here iff one is)
        self._held: dict[str, list[T]] = {}

    def offer(self, key: str, seq: int, item: T) -> Decision | Fetch:
        """A live item of ``key`` with seq ``seq``: deliver, hold, drop, or fetch the hole first."""
        if self._held:
            held = self._held.get(key)
            if held is not None:
                held.append(item)
                return _HOLD
        verdict = self.cursors.offer(key, seq)
        if verdict is _NEXT:
            return _DELIVER
        if verdict is _HELD_ALREADY:
            return _DROP
        self._held[key] = [item]
        return Fetch(key, self.cursors.get(key) or 0, seq)

    def resync(self) -> list[Fetch]:
        """The live feed was away: a fetch to the end for each key with a position and no fill in flight."""
        fetches: list[Fetch] = []
        for key, pos in self.cursors.snapshot().items():
            if key not in self._held:
                self._held[key] = []
                fetches.append(Fetch(key, pos, None))
        return fetches

    def filled(self, fetch: Fetch, rows: Iterable[T]) -> Filled[T]:
        """Storage answered ``fetch`` with ``rows`` (in seq order): what to deliver, what to fetch next."""
        key = fetch.key
        held = self._held.pop(key, [])
        # a key revoked while fetching hands over nothing: its cursors drop every seq
        deliver: list[T] = []
        top = 0  # gap-free: the highest seq storage returned
        if self._gap_free:
            # rows and held items together, in seq order (a row before a held copy of it)
            stored = list(rows)
            top = max((self._seq(r) for r in stored), default=0)
            replay = sorted([*stored, *held], key=self._seq)
        else:
            # the range is complete: deliver what is newer, then stand at ``upto``
            for row in rows:
                if self.cursors.advance(key, self._seq(row)):
                    deliver.append(row)
            if fetch.upto is not None:
                self.cursors.set(key, fetch.upto)
            replay = sorted(held, key=self._seq)
        again: Fetch | None = None
        for item in replay:
            seq = self._seq(item)
            if seq <= top:
                # storage returned seq ``top``: every seq below it was committed before it, so
                # one missing below it is gone for good (retention purged it), not late: step over
                self.cursors.set(key, seq - 1)
            decision = self.offer(key, seq, item)
            if decision is _DELIVER:
                deliver.append(item)
            elif isinstance(decision, Fetch):
                again = decision
        if again is not None and self._gap_free:
            # the same hole, not filled yet: try again, up to everything held behind it
            again = Fetch(key, again.after, self._seq(self._held[key][-1]), fetch.attempt + 1)
        return Filled(deliver, again)

    def failed(self, fetch: Fetch) -> Filled[T]:
        """Reading ``fetch`` failed: what to deliver anyway, and the fetch to retry."""
        if self._gap_free:
            return self.filled(fetch, ())  # as a fetch that found nothing: the hole stays
        return Filled([], Fetch(fetch.key, fetch.after, fetch.upto, fetch.attempt + 1))

    def fills(self) -> list[str]:
        """The keys with a fill in flight."""
        return list(self._held)
