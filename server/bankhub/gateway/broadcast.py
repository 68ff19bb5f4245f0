"""Official-account notices on one node: from one broadcast signal to every targeted,
connected follower here.

Every node receives every account event (a publication or a recall) once, on the
broadcast channel. This node keeps:

* an index ``account -> connections here that follow it`` (built from the followed
  accounts loaded with the session, kept current by follow signals);
* one stream cursor per account (a :class:`~bankhub.protocol.cursors.DeliveryCursors`
  keyed by account): account streams are gap-free, so a missed broadcast shows up as a
  gap and is fetched from storage once for the node, not once per follower;
* per connection, the last event seq it was given per account (``Connection.notice_seen``),
  so an event the client already got through ``sync`` is not pushed again.

Each event is encoded once and handed to each targeted connection (written at once to an
idle socket, else queued): the cost of a notice on a node is one decode, one encode and one
write per local follower. The writes are done in slices of :data:`SLICE` connections per
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

from ..protocol.cursors import DeliveryCursors, Verdict
from ..protocol.frames import Notice, NoticeEvent, NoticeRecalled, encode
from ..signals import NoticeSignal
from ..storage.accounts import NoticeEventRow
from ..targeting import EVERYONE, Target, matches
from .connection import FILL_RETRY_MAX, FILL_RETRY_MIN, Connection

__all__ = ["NoticeFanout", "EventFetcher", "SLICE"]

SLICE = 500
"""Connections written to per event-loop turn during a fan-out."""

log = logging.getLogger("bankhub.gateway")

EventFetcher = Callable[[str, int, int | None], Awaitable[list[NoticeEventRow]]]
"""``(account_id, after, upto)``: the account's events in ``(after, upto]`` (``upto`` None: to the end)."""


@dataclass(slots=True)
class _FanOut:
    text: str
    conns: list[Connection]
    next: int = 0


class NoticeFanout:
    def __init__(self, fetch_events: EventFetcher) -> None:
        self._fetch = fetch_events
        self.by_account: dict[str, set[Connection]] = {}
        self._streams = DeliveryCursors()
        self._filling: dict[str, list[NoticeSignal]] = {}
        self._delivered: dict[str, int] = {}
        self._tasks: set[asyncio.Task[None]] = set()
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
        account = signal.notice.account_id
        if account in self._filling:
            self._filling[account].append(signal)
            return
        verdict = self._streams.offer(account, signal.event_seq)
        if verdict is Verdict.DELIVER:
            self._deliver(signal.event_seq, signal.notice, signal.target)
        elif verdict is Verdict.GAP:
            self._filling[account] = [signal]
            self._spawn(self._fill(account, self._streams.get(account) or 0, signal.event_seq))

    def resync(self) -> None:
        """The broker was away: fetch every known account's events after our cursor."""
        for account, held in self._streams.snapshot().items():
            if account not in self._filling:
                self._filling[account] = []
                self._spawn(self._fill(account, held, None))

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
        text = encode(frame).decode()
        everyone = target == EVERYONE
        chosen: list[Connection] = []
        for conn in conns:
            seen = conn.notice_seen
            if seen.get(account, 0) >= event_seq:
                continue  # the client has it already (through sync)
            if not everyone and not matches(target, conn.user, conn.org_path):
                continue
            seen[account] = event_seq
            chosen.append(conn)
        if publication and chosen:
            self._delivered[notice.notice_id] = self._delivered.get(notice.notice_id, 0) + len(chosen)
        if not self._backlog and len(chosen) <= SLICE:
            for conn in chosen:
                conn.push(text, now=True)
            return
        self._backlog.append(_FanOut(text, chosen))
        if not self._draining:
            self._draining = True
            self._drain()

    def _drain(self) -> None:
        """Write up to :data:`SLICE` connections of the oldest fan-out, then yield the loop."""
        budget = SLICE
        while self._backlog and budget > 0:
            work = self._backlog[0]
            end = min(len(work.conns), work.next + budget)
            for conn in work.conns[work.next : end]:
                conn.push(work.text, now=True)
            budget -= end - work.next
            work.next = end
            if end == len(work.conns):
                self._backlog.popleft()
        if self._backlog:
            asyncio.get_running_loop().call_soon(self._drain)
        else:
            self._draining = False

    async def _fill(self, account: str, held: int, upto: int | None, attempt: int = 0) -> None:
        if attempt:
            await asyncio.sleep(min(FILL_RETRY_MAX, FILL_RETRY_MIN * 2 ** (attempt - 1)))
        try:
            fetched = await self._fetch(account, held, upto)
        except Exception:
            log.warning("notice gap fill failed for account %s (attempt %d)", account, attempt + 1, exc_info=True)
            fetched = []
        buffered = self._filling.pop(account, [])
        events = [(e.event_seq, e.notice, e.target) for e in fetched]
        events += [(s.event_seq, s.notice, s.target) for s in buffered]
        hole: list[NoticeSignal] = []
        for event_seq, notice, target in sorted(events, key=lambda e: e[0]):
            pos = self._streams.get(account) or 0
            if event_seq == pos + 1:
                self._streams.advance(account, event_seq)
                self._deliver(event_seq, notice, target)
            elif event_seq > pos + 1:
                hole.append(NoticeSignal(event_seq=event_seq, notice=notice, target=target))
        if hole:  # still missing events: keep what follows the hole and try again later
            self._filling[account] = hole
            self._spawn(self._fill(account, self._streams.get(account) or 0, hole[-1].event_seq, attempt + 1))

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
