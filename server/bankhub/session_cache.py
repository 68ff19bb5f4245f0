"""A node's bounded cache of verified sessions, so a reconnect authenticates without Postgres.

Pure code (no I/O, no clock of its own: every call is given ``now``, a monotonic time in
seconds, and the session's expiry as a wall-clock datetime with the wall-clock ``wall_now``).
The hub wires it to the session lookup (:func:`bankhub.actions.sessions.authenticate_token`)
and to the broker (see ``docs/security.md``, "Session cache"). The contract:

* **Key.** An entry is keyed by the SHA-256 hash of the bearer token (the same digest the
  ``sessions`` table is looked up by), never by the token itself.
* **Bound.** At most ``max_entries`` entries; the least recently used one goes first.
  ``max_entries == 0`` turns the cache off (every lookup misses, nothing is kept).
* **Age.** An entry is used for at most ``max_age`` seconds after it was filled, and never
  at or past the session's own ``expires_at``: whichever comes first ends it.
* **Invalidation.** :meth:`SessionCache.forget_user` drops every entry of a user (a
  revoked session, a sign-out, a password or role change, anything that changes what the
  principal may do); :meth:`SessionCache.flush` drops everything (the node's broker link
  was lost or came back: a revocation may have been missed).
* **Re-check.** :meth:`due` names the entries checked least recently (a fill counts as a
  check), so the hub's periodic re-check can compare a bounded batch of them with storage
  each tick and :meth:`confirm` the ones unchanged (anything else is forgotten): a change
  made outside the hub (a user disabled, a role or org changed in SQL, sessions revoked by
  the CLI) stops being served after at most a few re-check intervals, not only at ``max_age``.
* **No stale fill.** A lookup that went to Postgres fills the cache only if nothing was
  invalidated for that user (nor flushed) since the lookup began: :meth:`begin` hands out
  a ticket before the query and :meth:`fill` refuses a ticket older than an invalidation
  that could concern it. So a revocation that lands while the row is in flight is never
  undone by the fill.

The invalidation record is itself bounded (``max_entries`` users, at least 1024): when it
is full, the oldest record is folded into a floor below which every ticket is refused.
"""

from __future__ import annotations

import datetime as dt
from collections import OrderedDict
from typing import Generic, TypeVar

__all__ = ["SessionCache", "CacheStats"]

P = TypeVar("P")

_MIN_FORGOTTEN = 1024


class CacheStats:
    """Counters of one cache (plain ints: read them for metrics or tests)."""

    __slots__ = ("hits", "misses", "fills", "refused_fills", "evictions", "invalidations", "flushes")

    def __init__(self) -> None:
        self.hits = self.misses = self.fills = self.refused_fills = 0
        self.evictions = self.invalidations = self.flushes = 0


class _Entry(Generic[P]):
    __slots__ = ("principal", "user_id", "until", "expires_at")

    def __init__(self, principal: P, user_id: str, until: float, expires_at: dt.datetime) -> None:
        self.principal = principal
        self.user_id = user_id
        self.until = until  # monotonic: filled + max_age, or the expiry if sooner
        self.expires_at = expires_at  # wall clock: checked again on use (the clock may jump)


class SessionCache(Generic[P]):
    """Token hash -> verified principal (a :class:`~bankhub.models.Session`), bounded and
    short-lived. See the module docstring for the contract."""

    def __init__(self, max_entries: int, max_age: float) -> None:
        if max_entries < 0 or max_age < 0:
            raise ValueError("max_entries and max_age must not be negative")
        self.max_entries = max_entries
        self.max_age = max_age
        self.stats = CacheStats()
        self._entries: OrderedDict[bytes, _Entry[P]] = OrderedDict()
        self._by_user: dict[str, set[bytes]] = {}
        self._checks: OrderedDict[bytes, None] = OrderedDict()  # least recently checked first
        # invalidation clock: every forget/flush moves it on; a ticket is its value at begin()
        self._clock = 0
        self._floor = 0  # tickets below this are refused (a flush, or a folded record)
        self._forgotten: OrderedDict[str, int] = OrderedDict()  # user id -> clock at its last forget

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def enabled(self) -> bool:
        return self.max_entries > 0 and self.max_age > 0

    def get(self, token_hash: bytes, now: float, wall_now: dt.datetime) -> P | None:
        """The cached principal of ``token_hash``, or None (unknown, too old, or expired)."""
        entry = self._entries.get(token_hash)
        if entry is None:
            self.stats.misses += 1
            return None
        if now >= entry.until or wall_now >= entry.expires_at:
            self._drop(token_hash, entry)
            self.stats.misses += 1
            return None
        self._entries.move_to_end(token_hash)
        self.stats.hits += 1
        return entry.principal

    def begin(self) -> int:
        """A ticket for a lookup about to go to storage; pass it to :meth:`fill`."""
        return self._clock

    def fill(
        self, ticket: int, token_hash: bytes, principal: P, user_id: str, expires_at: dt.datetime, now: float, wall_now: dt.datetime
    ) -> bool:
        """Keep the principal a storage lookup (begun with ``ticket``) verified. False, and
        nothing kept, when an invalidation or flush since the ticket could concern it, when
        the session ends within the cache's resolution, or when the cache is off."""
        if not self.enabled:
            return False
        if ticket < self._floor or self._forgotten.get(user_id, -1) > ticket:
            self.stats.refused_fills += 1
            return False
        left = (expires_at - wall_now).total_seconds()
        if left <= 0:
            return False
        old = self._entries.get(token_hash)
        if old is not None:
            self._drop(token_hash, old)
        self._entries[token_hash] = _Entry(principal, user_id, now + min(self.max_age, left), expires_at)
        self._checks[token_hash] = None
        self._by_user.setdefault(user_id, set()).add(token_hash)
        self.stats.fills += 1
        while len(self._entries) > self.max_entries:
            key, entry = next(iter(self._entries.items()))
            self._drop(key, entry)
            self.stats.evictions += 1
        return True

    def forget_user(self, user_id: str) -> int:
        """Drop every entry of ``user_id`` and refuse fills of lookups begun before now.
        Returns how many entries were dropped."""
        self._clock += 1
        self._forgotten[user_id] = self._clock
        self._forgotten.move_to_end(user_id)
        limit = max(_MIN_FORGOTTEN, self.max_entries)
        while len(self._forgotten) > limit:
            _, at = self._forgotten.popitem(last=False)
            # a lookup begun before that record could be the one it concerned: refuse them all
            self._floor = max(self._floor, at)
        self.stats.invalidations += 1
        keys = self._by_user.pop(user_id, set())
        for key in keys:
            self._entries.pop(key, None)
            self._checks.pop(key, None)
        return len(keys)

    def due(self, limit: int) -> list[tuple[bytes, P]]:
        """Up to ``limit`` entries, least recently checked (or filled) first, to compare with
        storage; pass the unchanged ones to :meth:`confirm` (they go to the back of the line)."""
        out: list[tuple[bytes, P]] = []
        for key in self._checks:
            if len(out) >= limit:
                break
            out.append((key, self._entries[key].principal))
        return out

    def confirm(self, token_hash: bytes, principal: P) -> None:
        """Storage still gives ``principal`` for ``token_hash``: check it again last. Nothing
        happens if the entry has meanwhile gone or been replaced."""
        entry = self._entries.get(token_hash)
        if entry is not None and entry.principal is principal:
            self._checks.move_to_end(token_hash)

    def flush(self) -> None:
        """Drop everything and refuse every fill of a lookup begun before now."""
        self._clock += 1
        self._floor = self._clock
        self._entries.clear()
        self._by_user.clear()
        self._checks.clear()
        self._forgotten.clear()
        self.stats.flushes += 1

    def _drop(self, key: bytes, entry: _Entry[P]) -> None:
        self._entries.pop(key, None)
        self._checks.pop(key, None)
        keys = self._by_user.get(entry.user_id)
        if keys is not None:
            keys.discard(key)
            if not keys:
                del self._by_user[entry.user_id]
