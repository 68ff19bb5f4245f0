"""Official-account bookkeeping, without I/O: which notices and recalls to hand out.

Every official account has one event stream: each publication and each recall takes
the next seq. A follower sees only the events targeted at them, so *their* seqs have
gaps, and unlike a conversation a gap proves nothing: the client cannot detect a lost
event from seqs alone. It relies instead on what the hub guarantees on one connection:

* ``sync`` with ``accounts = {account: cursor}`` answers, per followed account, every
  event for me in ``(cursor, new cursor]`` (``has_more``: ask again from the new one);
* once a ``sync`` has answered on a connection, live ``notice``/``notice_recalled``
  events of each account arrive in stream order, and none the answer already covered
  is pushed after it (the hub remembers each connection's position per account).

So :class:`NoticeInbox` keeps, per account, a cursor: the last event seq whose effect
the client holds. On a connection that has not finished a sync yet, live events may
overlap the coming answer, or precede events it will still contain, so they are held
back and replayed once the sync has answered: those the answer covered are dropped, the
rest are handed out in order. On a live connection an event at or below the cursor is
a duplicate. A recall is handed out once per notice (a notice is recalled at most once),
remembered by id since ``sync`` does not say at which event seq a recall happened.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from .models import Notice, NoticeRecalled

__all__ = ["NoticeEvent", "SyncedAccount", "NoticeSyncResult", "NoticeInbox"]

NoticeEvent = Notice | NoticeRecalled
"""What the inbox hands out."""


class SyncedAccount(NamedTuple):
    """One account of a ``synced`` answer: its events for me up to ``cursor``."""

    account_id: str
    cursor: int
    notices: Sequence[Notice]
    has_more: bool


@dataclass(slots=True)
class NoticeSyncResult:
    """What one ``synced`` answer did: events to hand out (in order), and whether
    another ``sync`` round is needed for some account."""

    delivered: list[NoticeEvent] = field(default_factory=list)
    more: bool = False


class NoticeInbox:
    """Per followed account, the last account event seq held; deduplicates and orders
    the notices and recalls of live events and ``synced`` answers.

    ``cursors`` resumes an earlier run (see :meth:`snapshot`). An account without a
    cursor is left out of ``sync``, which then starts it at my read position.
    ``recall_memory`` bounds how many recalled notice ids are remembered.
    """

    __slots__ = ("_pos", "_recalled", "_recall_memory", "_live", "_held")

    def __init__(self, cursors: Mapping[str, int] | None = None, *, recall_memory: int = 10_000) -> None:
        if recall_memory < 1:
            raise ValueError("recall_memory must be >= 1")
        self._pos: dict[str, int] = {}
        self._recalled: OrderedDict[tuple[str, str], None] = OrderedDict()
        self._recall_memory = recall_memory
        self._live = False
        self._held: list[NoticeEvent] = []
        for account_id, seq in (cursors or {}).items():
            self.seed(account_id, seq)

    # --- cursors ------------------------------------------------------------------------

    def get(self, account_id: str) -> int | None:
        """The cursor of an account, None if it has none."""
        return self._pos.get(account_id)

    def snapshot(self) -> dict[str, int]:
        """All cursors (a copy): what ``sync`` sends as ``accounts``, and what to persist."""
        return dict(self._pos)

    def seed(self, account_id: str, seq: int) -> None:
        """Declare every event of the account up to ``seq`` held (or deliberately skipped)."""
        if seq < 0:
            raise ValueError("seq must be >= 0")
        if seq > self._pos.get(account_id, -1):
            self._pos[account_id] = seq

    def forget(self, account_id: str) -> None:
        """Drop an account's cursor (I unfollowed it): a later follow starts afresh."""
        self._pos.pop(account_id, None)

    # --- connections -----------------------------------------------------------------

    @property
    def live(self) -> bool:
        """True when live events are handed out as they come (a sync answered on this connection)."""
        return self._live

    @property
    def held(self) -> int:
        """Live events held back until the connection's first sync answers."""
        return len(self._held)

    def connection_started(self, *, live: bool) -> None:
        """A new connection: events held for the previous one are dropped (the coming
        sync covers them). ``live`` is True when no sync will run first (the cursors
        were just seeded from a snapshot taken after the handshake)."""
        self._held.clear()
        self._live = live

    def go_live(self) -> list[NoticeEvent]:
        """A sync answered in full: replay the held events; return those to hand out."""
        if self._live:
            return []
        self._live = True
        held, self._held = self._held, []
        out: list[NoticeEvent] = []
        for event in held:
            out.extend(self.on_event(event))
        return out

    # --- events ----------------------------------------------------------------------

    def on_event(self, event: NoticeEvent) -> list[NoticeEvent]:
        """A live ``notice`` or ``notice_recalled``: what to hand out now (0 or 1 events)."""
        if not self._live:
            self._held.append(event)
            return []
        account = event.account_id
        at = event.seq if isinstance(event, Notice) else event.event_seq
        if at is None:
            raise ValueError("a live recall carries its event_seq")
        pos = self._pos.get(account)
        if pos is not None and at <= pos:
            return []
        self._pos[account] = at
        if isinstance(event, Notice):
            if event.recalled:
                self._remember(account, event.notice_id)
            return [event]
        return [event] if self._remember(account, event.notice_id) else []

    def on_synced(self, accounts: Iterable[SyncedAccount]) -> NoticeSyncResult:
        """Apply a ``synced`` answer. A notice past the cursor is new (withdrawn already
        when ``recalled``); one at or below it that is now recalled is a recall of a
        notice held, handed out as :class:`NoticeRecalled` unless already reported."""
        result = NoticeSyncResult()
        for acc in accounts:
            before = self._pos.get(acc.account_id)
            for n in sorted(acc.notices, key=lambda n: n.seq):
                if n.account_id != acc.account_id:
                    continue
                if before is None or n.seq > before:
                    if n.recalled:
                        self._remember(n.account_id, n.notice_id)
                    result.delivered.append(n)
                elif n.recalled and self._remember(n.account_id, n.notice_id):
                    result.delivered.append(
                        NoticeRecalled(
                            account_id=n.account_id, notice_id=n.notice_id, seq=n.seq, ts=n.recalled_ts or n.ts
                        )
                    )
            after = max(acc.cursor, before if before is not None else 0)
            self._pos[acc.account_id] = after
            if acc.has_more and (before is None or after > before):
                result.more = True
        return result

    def _remember(self, account_id: str, notice_id: str) -> bool:
        """Note a recall; False if it was reported before."""
        key = (account_id, notice_id)
        if key in self._recalled:
            return False
        self._recalled[key] = None
        if len(self._recalled) > self._recall_memory:
            self._recalled.popitem(last=False)
        return True
