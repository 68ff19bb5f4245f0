"""Official-account notices on one node: from one broadcast signal to every targeted,
connected follower here.

Every node receives every account event (a publication or a recall) once, on the
broadcast channel. This node keeps:

* an index ``account -> connections here that follow it`` (built from the followed
  accounts loaded with the session, kept current by follow signals);
* one stream position per account (a gap-free :class:`~bankhub.protocol.streams.StreamFollower`
  keyed by account): account streams are gap-free, so a missed broadcast shows up as a
  gap and is fetched from storage once for the node, not once per follower;
* per connection, the last event seq it was given per account (``Connection.notice_seen``),
  so an event the client already got through ``sync`` is not pushed again.

Each event is encoded and framed once and the same bytes are handed to each targeted
connection (written at once to an idle socket, else queued): the cost of a notice on a node
is one decode, one encode and one write per local follower. The writes are done in slices of :data:`SLICE` connections per
event-loop turn, so a notice to a hundred thousand local followers does not stall every
other socket on the node while it goes out; a later event waits behind the slices of an
earlier one, so each connection still gets the account's events in order.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from ..metrics import TALLY
from ..models import NoticeEventRow, Target
from ..protocol.frames import CloseCode, Notice, NoticeEvent, NoticeRecalled, encode
from ..protocol.streams import Decision, Fetch, StreamFollower
from ..protocol.wire import text_frame
from ..signals import NoticeSignal
from ..targeting import EVERYONE, matches
from .connection import Connection
from .following import Tasks, fill

__all__ = ["NoticeFanout", "EventFetcher", "SLICE"]

SLICE = 500
"""Connections written to per event-loop turn during a fan-out."""

log = logging.getLogger("bankhub.delivery")

EventFetcher = Callable[[str, int, int | None], Awaitable[list[NoticeEventRow]]]
"""``(account_id, after, upto)``: the account's events in ``(after, upto]`` (``upto`` None: to the end)."""

_Event = NoticeSignal | NoticeEventRow
"""One account event: as signalled live, or as read back from storage (the same fields)."""


def _failed(conn: Connection) -> None:
    """A write to ``conn`` raised: close it (the client reconnects and syncs what it missed)."""
    log.warning("notice write failed for connection %s; closing it", conn.id, exc_info=True)
    conn.close(CloseCode.GOING_AWAY, "write failed")


def _event_seq(event: _Event) -> int:
    return event.event_seq


@dataclass(slots=True)
class _FanOut:
    wire: bytes
    conns: list[Connection]
    next: int = 0


class NoticeFanout:
    def __init__(self, fetch_events: EventFetcher) -> None:
        self._fetch = fetch_events
        self.by_account: dict[str, set[Connection]] = {}
        self._streams: StreamFollower[_Event] = StreamFollower(_event_seq)
        self._delivered: dict[str, int] = {}
        self._tasks = Tasks()
        self._backlog: deque[_FanOut] = deque()  # fan-outs still being written, oldest first
        self._draining = False

    # --- the follower index ---------------------------------------------------------

    def add(self, conn: Connection) -> None:
        for account in conn.follows:
            self.by_account.setdefault(account, set()).add(conn)

    def remove(self, conn: Connection) -> None:
        for account in conn.follows:
            self._drop(account, conn)

    def follow(self, conn: Connection, account: str, following: bool) -> None:
        """A follow or unfollow by the connection's user, from any node."""
        if following:
            conn.follows.add(account)
            self.by_account.setdefault(account, set()).add(conn)
        else:
            conn.follows.discard(account)
            self._drop(account, conn)

    def _drop(self, account: str, conn: Connection) -> None:
        conns = self.by_account.get(account)
        if conns is not None:
            conns.discard(conn)
            if not conns:
                del self.by_account[account]

    # --- events --------------------------------------------------------------------------

    def on_signal(self, signal: NoticeSignal) -> None:
        """A broadcast event: deliver it in stream order, filling any gap from storage."""
        decision = self._streams.offer(signal.notice.account_id, signal.event_seq, signal)
        if decision is Decision.DELIVER:
            self._deliver(signal.event_seq, signal.notice, signal.target)
        elif isinstance(decision, Fetch):
            self._fill(decision)

    def resync(self) -> None:
        """The broker was away: fetch every known account's events after our cursor."""
        for fetch in self._streams.resync():
            self._fill(fetch)

    def take_delivered(self) -> dict[str, int]:
        """Online deliveries per notice since the last call (the hub adds them to storage)."""
        counts, self._delivered = self._delivered, {}
        return counts

    def give_back(self, counts: dict[str, int]) -> None:
        """Counts taken by :meth:`take_delivered` that could not be saved: keep them."""
        for notice_id, n in counts.items():
            self._delivered[notice_id] = self._delivered.get(notice_id, 0) + n

    def _deliver(self, event_seq: int, notice: Notice, target: Target) -> None:
        account = notice.account_id
        conns = self.by_account.get(account)
        if not conns:
            return
        publication = event_seq == notice.seq
        frame: NoticeEvent | NoticeRecalled
        if publication:
            frame = NoticeEvent(notice=notice)
        else:
            frame = NoticeRecalled(
                account_id=account, notice_id=notice.notice_id, seq=notice.seq, event_seq=event_seq, ts=notice.recalled_ts or 0
            )
        wire = text_frame(encode(frame))  # framed once: the same bytes go to every follower
        everyone = target == EVERYONE
        chosen: list[Connection] = []
        for conn in conns:
            # read without creating it: a follower this notice does not target gets no dict
            seen = conn._notice_seen
            if seen is not None and seen.get(account, 0) >= event_seq:
                continue  # the client has it already (through sync)
            if not everyone and not matches(target, conn.user, conn.org_path):
                continue
            if seen is None:
                seen = conn.notice_seen
            seen[account] = event_seq
            chosen.append(conn)
        TALLY.frames_out["notice" if publication else "notice_recalled"] += len(chosen)  # metrics
        if publication and chosen:
            self._delivered[notice.notice_id] = self._delivered.get(notice.notice_id, 0) + len(chosen)
        if not self._backlog and len(chosen) <= SLICE:
            for conn in chosen:
                try:
                    conn.send_now(wire)
                except Exception:  # one broken socket must not cost the other followers theirs
                    _failed(conn)
            return
        self._backlog.append(_FanOut(wire, chosen))
        if not self._draining:
            self._draining = True
            self._drain()

    def _drain(self) -> None:
        """Write up to :data:`SLICE` connections of the oldest fan-out, then yield the loop."""
        budget = SLICE
        try:
            while self._backlog and budget > 0:
                work = self._backlog[0]
                end = min(len(work.conns), work.next + budget)
                for conn in work.conns[work.next : end]:
                    try:
                        conn.send_now(work.wire)
                    except Exception:  # one broken socket must not stop the fan-out
                        _failed(conn)
                budget -= end - work.next
                work.next = end
                if end == len(work.conns):
                    self._backlog.popleft()
        finally:
            # whatever happened, the backlog is written on: a stuck ``_draining`` would hold
            # every later notice of the node back
            if self._backlog:
                asyncio.get_running_loop().call_soon(self._drain)
            else:
                self._draining = False

    def _fill(self, fetch: Fetch) -> None:
        self._tasks.spawn(fill(self._streams, fetch, self._read, self._hand_over, self._fill_failed))

    async def _read(self, fetch: Fetch) -> list[NoticeEventRow]:
        return await self._fetch(fetch.key, fetch.after, fetch.upto)

    def _hand_over(self, events: list[_Event]) -> None:
        for e in events:
            self._deliver(e.event_seq, e.notice, e.target)

    @staticmethod
    def _fill_failed(fetch: Fetch) -> None:
        log.warning("notice gap fill failed for account %s (attempt %d)", fetch.key, fetch.attempt + 1, exc_info=True)

    def close(self) -> None:
        self._tasks.cancel()
