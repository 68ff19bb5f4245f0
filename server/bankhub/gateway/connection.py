"""One live WebSocket connection: its bounded outbound queue and delivery cursors.

Frames for the client are queued with :meth:`Connection.push` (never blocks). A single
writer task drains the queue onto the socket. If the client does not keep up and the
queue reaches ``outbound_queue`` frames, the connection is closed with 4008 (slow
consumer) — that client reconnects and syncs; nobody else waits for it.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from starlette.websockets import WebSocket, WebSocketState

from ..models import Session
from ..protocol.cursors import DeliveryCursors, Verdict
from ..protocol.frames import CloseCode, Message, MessageEvent, encode

__all__ = ["Connection"]

log = logging.getLogger("bankhub.gateway")

GapFiller = Callable[[str, int, int], Awaitable[list[Message]]]

FILL_RETRY_MIN, FILL_RETRY_MAX = 0.05, 1.0
"""Seconds before a gap fill is tried again while the hole stays open (doubling, capped)."""


class Connection:
    def __init__(self, conn_id: str, ws: WebSocket, session: Session, *, queue_limit: int, fill_gap: GapFiller) -> None:
        self.id = conn_id
        self.ws = ws
        self.session = session
        self.user = session.user
        self.cursors = DeliveryCursors()
        # official accounts: followed accounts (kept current by follow signals), the user's
        # org path for targeting, and the last account event seq handed to this client
        self.follows: set[str] = set(session.follows)
        self.org_path = session.org_path
        self.notice_seen: dict[str, int] = {}
        self._queue: deque[str] = deque()
        self._limit = queue_limit
        self._wake = asyncio.Event()
        self._fill_gap = fill_gap
        self._filling: dict[str, list[Message]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.close_code: int | None = None
        self.close_reason = ""
        self.closed = asyncio.Event()
        self._writer: asyncio.Task[object] | None = None
        self._sending = False
        self._flush = False
        # synchronous write for an idle connection (gateway/transport.py); None under other servers
        self._write_now: Callable[[str], bool] | None = ws.scope.get("extensions", {}).get("bankhub.write_now")

    # --- outbound ---------------------------------------------------------------

    def push(self, text: str, *, now: bool = False) -> None:
        """Queue one encoded frame. Overflow closes the connection (4008).

        ``now``: if the connection is idle (nothing queued or being sent) and its transport
        writable, write the frame at once instead of waking the writer task. It pays for
        single frames fanned out to many idle sockets (official-account notices: one wake-up
        saved per follower); a burst of frames to one socket is cheaper through the writer
        (measured in bench/: group fan-out 0.92x bare through the writer, 0.69x written at once).
        """
        if self.close_code is not None and not self._flush:
            return
        if len(self._queue) >= self._limit:
            self.close(CloseCode.SLOW_CONSUMER, "outbound queue overflow: reconnect and sync")
            return
        # idle and writable: write now, in order (nothing is queued or being sent before it)
        if now and not self._queue and not self._sending and self.close_code is None and self._write_now is not None:
            try:
                if self._write_now(text):
                    return
            except Exception:
                pass  # the writer task meets the broken socket and closes the connection
        self._queue.append(text)
        self._wake.set()

    def close(self, code: int, reason: str, *, flush: bool = False) -> None:
        """Close the connection. Idempotent: the first close's code and reason stay.

        By default what is queued is dropped and a send blocked on a peer that stopped
        reading is interrupted. With ``flush`` (a draining node, a policy close) the queued
        frames — answers to requests already accepted — are written first. A later close
        without ``flush`` ends such a flush: what is still queued is dropped (a peer that
        stopped reading, an overflow, a revoked session).
        """
        if self.close_code is None:
            self.close_code = code
            self.close_reason = reason
            self._flush = flush
        elif flush or not self._flush:
            return
        else:
            self._flush = False
        if not self._flush:
            self._queue.clear()
            if self._sending and self._writer is not None:
                self._writer.cancel()
        self._wake.set()

    def inflight(self) -> list[asyncio.Task[None]]:
        """The requests of this connection still being handled."""
        return [t for t in self._tasks if not t.done()]

    @property
    def queued(self) -> int:
        return len(self._queue)

    async def writer(self) -> None:
        """Drain the queue onto the socket until :meth:`close`; then close the socket."""
        self._writer = asyncio.current_task()
        try:
            while self.close_code is None or (self._flush and self._queue):
                if not self._queue:
                    self._wake.clear()
                    await self._wake.wait()
                    continue
                self._sending = True
                await self.ws.send_text(self._queue.popleft())
                self._sending = False
        except asyncio.CancelledError:
            if self.close_code is None:  # not our own interruption: the task is being torn down
                raise
        except Exception:  # the peer went away mid-send
            if self.close_code is None:
                self.close_code = CloseCode.GOING_AWAY
        finally:
            self._sending = False
            if self.ws.application_state == WebSocketState.CONNECTED:
                try:
                    await self.ws.close(self.close_code or CloseCode.NORMAL, self.close_reason[:120])
                except Exception:
                    pass
            self.closed.set()

    # --- delivery of committed messages ------------------------------------------------

    def deliver(self, message: Message, text: str | None, origin: str | None) -> None:
        """Hand over a signalled message: in order, once, filling gaps from storage."""
        conv = message.conversation_id
        if conv in self._filling:
            self._filling[conv].append(message)
            return
        verdict = self.cursors.offer(conv, message.seq)
        if verdict is Verdict.DELIVER:
            if origin != self.id:  # the sender's own connection already has its ``sent``
                self.push(text if text is not None else encode(MessageEvent(message=message)).decode())
        elif verdict is Verdict.GAP:
            self._filling[conv] = [message]
            held = self.cursors.get(conv) or 0
            self._spawn(self._fill(conv, held, message.seq))

    async def _fill(self, conv: str, held: int, upto: int, attempt: int = 0) -> None:
        if attempt:
            # the hole outlived the last attempt (storage unreachable, or behind the signal):
            # wait before the next one rather than spin; signals meanwhile wait in _filling
            await asyncio.sleep(min(FILL_RETRY_MAX, FILL_RETRY_MIN * 2 ** (attempt - 1)))
        try:
            fetched = await self._fill_gap(conv, held, upto)
        except Exception:
            log.warning("gap fill failed for connection %s (attempt %d); retrying", self.id, attempt + 1, exc_info=True)
            fetched = []
        buffered = self._filling.pop(conv, [])
        if self.cursors.revoked(conv):
            return  # access was revoked while fetching: hand over nothing
        hole: list[Message] = []
        for m in sorted(fetched + buffered, key=lambda m: m.seq):
            if self.cursors.get(conv) is None or m.seq == (self.cursors.get(conv) or 0) + 1:
                self.cursors.advance(conv, m.seq)
                self.push(encode(MessageEvent(message=m)).decode())
            elif m.seq > (self.cursors.get(conv) or 0) + 1:
                hole.append(m)
        if hole:  # still a hole: keep what follows it and try again later
            self._filling[conv] = hole
            self._spawn(self._fill(conv, self.cursors.get(conv) or 0, hole[-1].seq, attempt + 1))

    def catch_up(self, fetch: Callable[[dict[str, int]], Awaitable[list[Message]]]) -> None:
        """After a broker outage: fetch whatever came after our cursors and deliver it."""

        async def run() -> None:
            try:
                for m in await fetch(self.cursors.snapshot()):
                    self.deliver(m, None, None)
            except Exception:
                log.warning("catch-up failed for connection %s", self.id, exc_info=True)

        self._spawn(run())

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def cancel_tasks(self) -> None:
        for t in list(self._tasks):
            t.cancel()
