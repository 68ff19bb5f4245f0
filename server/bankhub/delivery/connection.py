"""One live WebSocket connection: its bounded outbound queue and its message streams.

Frames for the client are handed over with :meth:`Connection.push` (an encoded frame) or
:meth:`Connection.send_wire` (the frame's wire bytes, :func:`~bankhub.protocol.wire.text_frame`:
a frame fanned out to many receivers is framed once and the same bytes go to each). Neither
blocks. While nothing is queued and the transport takes data without waiting, the bytes are
written in the same event-loop turn — the frames a connection gets in one turn together, in
one ``transport.write`` at the end of it (no task wake-up per frame, one system call for a
commit batch of a group's messages); otherwise they are queued, and a writer task writes
the queue out, in order, as the transport drains. That task exists only while something is
queued or a close is being carried out: an idle connection holds no task of its own. If the client does not keep up and the queue reaches ``outbound_queue`` frames,
the connection is closed with 4008 (slow consumer) — that client reconnects and syncs;
nobody else waits for it.

Memory for a client that stops reading stays bounded: a turn's batch is written as soon as
it holds :data:`BATCH_BYTES` (or ``outbound_queue`` frames), and a new batch starts only
while the transport is below its high-water mark; so the transport holds at most its
high-water mark plus one batch (and one frame), and everything after that waits in the
queue, at most ``outbound_queue`` frames. Only frames the transport does not take count
against ``outbound_queue``: a burst to a client that keeps up is written, however long.

Messages are followed per conversation by a gap-free
:class:`~bankhub.protocol.streams.StreamFollower` (:attr:`Connection.messages`); its
gaps are filled from storage by :func:`~bankhub.delivery.following.fill`.

Memory: every connection of a node is held for as long as it is open, so the structures a
connection may never use (the outbound queue, the request-task set, the notice positions)
are created on first use, and the class has ``__slots__``.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Protocol

from starlette.websockets import WebSocket, WebSocketState

from .. import logs
from ..metrics import TALLY, queueing
from ..models import Session
from ..protocol.frames import CloseCode, Message, MessageEvent, encode
from ..protocol.streams import Decision, Fetch, StreamFollower
from ..protocol.wire import payload_of, text_frame
from .following import Tasks, fill

__all__ = ["Connection", "Outlet", "BATCH_BYTES"]

log = logging.getLogger("bankhub.delivery")

BATCH_BYTES = 64 * 1024
"""Bytes of a turn's batch at which it is written at once (asyncio's and uvloop's default
write high-water mark): after that write the transport pauses a slow reader and later
frames queue, so the transport never holds much more than twice this for one connection."""

GapFiller = Callable[[str, int, int], Awaitable[list[Message]]]
"""``(conversation_id, after, upto)``: the conversation's messages in ``(after, upto]``."""


class Outlet(Protocol):
    """Where a connection's framed bytes go: the hub's transport (the ``bankhub.outlet`` ASGI
    extension, :class:`~bankhub.gateway.transport.HubWebSocketProtocol`)."""

    def ready(self) -> bool:
        """:meth:`write_wire` would write now."""
        ...

    def write_wire(self, data: bytes) -> bool:
        """Write ``data`` now if the socket is open and takes data without waiting; else False."""
        ...

    def open_for_data(self) -> bool:
        """Data may still be written, now or once writable (no close sent or received)."""
        ...

    async def until_writable(self) -> None:
        """Return once the transport takes data again (or the socket is gone)."""
        ...


class _AsgiOutlet:
    """The ASGI ``send`` path, for a server without the ``bankhub.outlet`` extension: each
    frame is one awaited ``websocket.send`` of its text."""

    __slots__ = ("_ws",)

    def __init__(self, ws: WebSocket) -> None:
        self._ws = ws

    def ready(self) -> bool:
        return False

    def write_wire(self, data: bytes) -> bool:
        return False

    def open_for_data(self) -> bool:
        return self._ws.application_state == WebSocketState.CONNECTED

    async def until_writable(self) -> None:
        return None

    async def send(self, data: bytes) -> None:
        await self._ws.send_text(payload_of(data))


class _Closed:
    """The close of one connection, awaitable (an :class:`asyncio.Event`'s ``wait``/``is_set``
    without an event per connection)."""

    __slots__ = ("_conn",)

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def is_set(self) -> bool:
        return self._conn._gone

    async def wait(self) -> None:
        await self._conn.wait_closed()


class _Batches:
    """The connections of one event loop with frames batched in this turn; one callback at
    the end of the turn writes each one's frames (:meth:`Connection.send_wire`)."""

    __slots__ = ("_conns", "_loop", "_scheduled")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._conns: list[Connection] = []
        self._loop = loop
        self._scheduled = False

    def add(self, conn: Connection) -> None:
        if not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self.write)
        self._conns.append(conn)

    def write(self) -> None:
        conns, self._conns = self._conns, []
        self._scheduled = False
        for conn in conns:
            try:
                conn._write_batch()
            except Exception:  # one broken socket must not leave the others' batches unwritten
                log.warning("write failed for connection %s; closing it", conn.id, exc_info=True)
                conn.close(CloseCode.GOING_AWAY, "write failed")


_BATCHES: dict[asyncio.AbstractEventLoop, _Batches] = {}
"""Per event loop (several loops may run in threads of one process): its batches."""


def _batches() -> _Batches:
    loop = asyncio.get_running_loop()
    batches = _BATCHES.get(loop)
    if batches is None:
        for old in [other for other in list(_BATCHES) if other.is_closed()]:
            _BATCHES.pop(old, None)
        batches = _BATCHES[loop] = _Batches(loop)
    return batches


def _message_seq(message: Message) -> int:
    return message.seq


_DELIVER = Decision.DELIVER  # bound once: deliver runs for every signalled message


class Connection:
    __slots__ = (
        "id",
        "ws",
        "session",
        "user",
        "messages",
        "cursors",
        "follows",
        "org_path",
        "_notice_seen",
        "_queue",
        "_batch",
        "_batch_bytes",
        "_limit",
        "_fill_gap",
        "_tasks",
        "close_code",
        "close_reason",
        "_writer",
        "_sending",
        "_flush",
        "_shut",
        "_gone",
        "_gone_waiter",
        "_out",
        "_asgi",
        "__weakref__",  # alert delivery keeps per-connection state in a WeakKeyDictionary
    )

    def __init__(self, conn_id: str, ws: WebSocket, session: Session, *, queue_limit: int, fill_gap: GapFiller) -> None:
        self.id = conn_id
        self.ws = ws
        self.session = session
        self.user = session.user
        # per conversation: what the client holds, and the messages held while a gap is filled
        self.messages: StreamFollower[Message] = StreamFollower(_message_seq)
        # the positions alone: a sync declares them, a lost access cuts a conversation off
        self.cursors = self.messages.cursors
        # official accounts: followed accounts (kept current by follow signals), the user's
        # org path for targeting, and the last account event seq handed to this client
        self.follows: set[str] = set(session.follows)
        self.org_path = session.org_path
        self._notice_seen: dict[str, int] | None = None
        self._queue: deque[bytes] | None = None  # frames not yet written, oldest first
        self._batch: list[bytes] | None = None  # frames of this event-loop turn, written at its end
        self._batch_bytes = 0  # bytes in ``_batch``
        self._limit = queue_limit
        self._fill_gap = fill_gap
        self._tasks: Tasks | None = None
        self.close_code: int | None = None
        self.close_reason = ""
        self._writer: asyncio.Task[None] | None = None  # only while something is queued or closing
        self._sending = False  # the writer waits for the transport to drain
        self._flush = False
        self._shut = False  # the socket's close is under way or done: nothing is written after it
        self._gone = False  # the socket's close is done
        self._gone_waiter: asyncio.Future[None] | None = None
        outlet: Outlet | None = ws.scope.get("extensions", {}).get("bankhub.outlet")
        self._asgi = outlet is None
        self._out: Outlet = outlet if outlet is not None else _AsgiOutlet(ws)

    @property
    def notice_seen(self) -> dict[str, int]:
        """Per official account, the last event seq handed to this client (created on first use)."""
        seen = self._notice_seen
        if seen is None:
            seen = self._notice_seen = {}
        return seen

    # --- outbound ---------------------------------------------------------------

    def push(self, text: str) -> None:
        """Queue one encoded frame (framed here, for this connection alone). See :meth:`send_wire`."""
        self.send_wire(text_frame(text.encode()))

    def send_wire(self, wire: bytes) -> None:
        """Write one framed frame (:func:`~bankhub.protocol.wire.text_frame`), in order; never blocks.

        When nothing is queued and the transport takes data without waiting, the frame is
        written in this event-loop turn: the frames a connection gets in one turn (a commit
        batch of a group's messages) are written together, one ``transport.write`` (one
        system call) for all of them, at the end of the turn or once :data:`BATCH_BYTES` or
        ``outbound_queue`` frames of them are waiting. Otherwise it is queued (a writer task writes it once the transport
        drains). Overflow of the queue closes the connection (4008). After a close (without
        flush) nothing more is written.
        """
        if self.close_code is not None and not self._flush:
            return
        batch = self._batch
        if batch is not None:
            batch.append(wire)
            self._batch_bytes += len(wire)
            if self._batch_bytes >= BATCH_BYTES or len(batch) >= self._limit:
                self._write_batch()  # a long burst is written now: what waits stays bounded
            return
        queue = self._queue
        if queue:
            if len(queue) >= self._limit:
                self.close(CloseCode.SLOW_CONSUMER, "outbound queue overflow: reconnect and sync")
                return
            queue.append(wire)
            return  # the writer is running: it takes this in turn
        # nothing queued, nothing being sent: written at the end of this turn, in order
        if self.close_code is None and self._out.ready():
            self._batch = [wire]
            self._batch_bytes = len(wire)
            _batches().add(self)
            return
        self._enqueue(wire)

    def send_now(self, wire: bytes) -> None:
        """:meth:`send_wire` for a frame that goes to many sockets once each (a notice): written
        at once when nothing waits before it and the transport takes data (a batch of one
        frame would only cost a callback), else as :meth:`send_wire` does, in order."""
        if self._batch is None and not self._queue and self.close_code is None and self._out.write_wire(wire):
            return
        self.send_wire(wire)

    def _write_batch(self) -> None:
        """Write the frames batched in this turn (see :meth:`send_wire`); queue them if the
        transport stopped taking data meanwhile."""
        batch, self._batch = self._batch, None
        if not batch:
            return
        if self.close_code is None and self._out.write_wire(batch[0] if len(batch) == 1 else b"".join(batch)):
            return
        for wire in batch:
            self._enqueue(wire)

    def _enqueue(self, wire: bytes) -> None:
        if self.close_code is not None and not self._flush:
            return
        queue = self._queue
        if queue and len(queue) >= self._limit or self._limit <= 0:
            self.close(CloseCode.SLOW_CONSUMER, "outbound queue overflow: reconnect and sync")
            return
        if queue is None:
            queue = self._queue = deque()
        queue.append(wire)
        self._start_writer()

    def _own_context(self) -> contextvars.Context:
        """A context with this connection's log ids alone: a task created for it runs in it,
        not in the context of whoever caused the task (another connection's request, the
        broker reader)."""
        context = contextvars.Context()
        context.run(logs.bind, connection_id=self.id, user_id=self.user.id)
        return context

    def _start_writer(self) -> None:
        if self._writer is None and not self._shut:
            self._writer = asyncio.get_running_loop().create_task(
                self._write_out(), name=f"ws-writer-{self.id}", context=self._own_context()
            )
            queueing(self, self._writer)  # metrics: the queue levels read only connections with a writer

    def close(self, code: int, reason: str, *, flush: bool = False) -> None:
        """Close the connection. Idempotent: the first close's code and reason stay.

        By default what is queued is dropped and a send blocked on a peer that stopped
        reading is interrupted. With ``flush`` (a draining node, a policy close) the queued
        frames — answers to requests already accepted — are written first. A later close
        without ``flush`` ends such a flush: what is still queued is dropped (a peer that
        stopped reading, an overflow, a revoked session).
        """
        if self.close_code is None:
            TALLY.closes[code] += 1  # metrics: closes by code, 4008 the slow-consumer count (bankhub.metrics)
            self.close_code = code
            self.close_reason = reason
            self._flush = flush
        elif flush or not self._flush:
            return
        else:
            self._flush = False
        if self._batch is not None:  # frames of this turn not written yet: queued first, in order
            batch, self._batch = self._batch, None
            if self._flush:
                self._queue = deque(batch + list(self._queue or ()))
        if not self._flush:
            if self._queue:
                self._queue.clear()
            if self._sending and self._writer is not None:
                self._writer.cancel()
        self._start_writer()  # it writes what is to be flushed, then closes the socket

    def inflight(self) -> list[asyncio.Task[None]]:
        """The requests of this connection still being handled."""
        return [] if self._tasks is None else self._tasks.running()

    @property
    def queued(self) -> int:
        """Frames waiting for the transport to drain."""
        return 0 if self._queue is None else len(self._queue)

    @property
    def writing(self) -> bool:
        """A writer task exists: something is queued, or the close is being carried out."""
        return self._writer is not None

    async def _write_out(self) -> None:
        """Write the queue out as the transport drains; after :meth:`close`, close the socket."""
        out = self._out
        try:
            while self._queue and (self.close_code is None or self._flush):
                queue = self._queue
                if self._asgi:
                    self._sending = True
                    await out.send(queue[0])  # type: ignore[attr-defined]
                    self._sending = False
                    queue.popleft()
                elif out.write_wire(queue[0]):
                    queue.popleft()
                elif out.open_for_data():
                    self._sending = True
                    await out.until_writable()
                    self._sending = False
                else:
                    raise ConnectionResetError("the peer went away")
        except asyncio.CancelledError:
            if self.close_code is None:  # not our own interruption: the task is being torn down
                self._writer = None
                raise
        except Exception:  # the peer went away mid-send
            if self.close_code is None:
                self.close_code = CloseCode.GOING_AWAY
        self._sending = False
        if self.close_code is None:
            self._queue = None  # all written: idle again, with no task
            self._writer = None
            return
        self._shut = True
        self._queue = None
        try:
            if self.ws.application_state == WebSocketState.CONNECTED:
                try:
                    await self.ws.close(self.close_code or CloseCode.NORMAL, self.close_reason[:120])
                except Exception:
                    pass
        finally:
            self._gone = True
            waiter = self._gone_waiter
            if waiter is not None and not waiter.done():
                waiter.set_result(None)

    @property
    def closed(self) -> _Closed:
        """``await conn.closed.wait()``: returns once the socket's close is done (after :meth:`close`)."""
        return _Closed(self)

    async def wait_closed(self) -> None:
        """Return once the socket's close is done (after :meth:`close`). Cancelling the caller
        does not cancel the close."""
        if self._gone:
            return
        waiter = self._gone_waiter
        if waiter is None:  # created only when someone waits
            waiter = self._gone_waiter = asyncio.get_running_loop().create_future()
        await asyncio.shield(waiter)

    async def finish(self, timeout: float) -> None:
        """After :meth:`close`: wait up to ``timeout`` seconds for the queued frames to be
        written and the socket closed; a client that stopped reading is then cut off."""
        if self.close_code is None:
            self.close(CloseCode.NORMAL, "")
        writer = self._writer
        if writer is None:
            return
        done, _ = await asyncio.wait([writer], timeout=timeout)
        if not done:
            self.close(self.close_code or CloseCode.NORMAL, self.close_reason)  # drops what is still queued
        try:
            await writer
        except asyncio.CancelledError:
            if not writer.cancelled():
                raise

    # --- delivery of committed messages ------------------------------------------------

    def deliver(self, message: Message, wire: bytes | None, origin: str | None) -> None:
        """Hand over a signalled message (``wire``: its ``message`` frame, framed; None: frame it
        here): in order, once, filling gaps from storage."""
        decision = self.messages.offer(message.conversation_id, message.seq, message)
        if decision is _DELIVER:
            if origin != self.id:  # the sender's own connection already has its ``sent``
                self.send_wire(wire if wire is not None else text_frame(encode(MessageEvent(message=message))))
            else:  # metrics: the registry counted it as handed over (one add per signal); it was not
                TALLY.messages_out -= 1
        elif isinstance(decision, Fetch):
            # in this connection's log context, not the broker reader's (or another connection's)
            self._own_context().run(self._spawn, fill(self.messages, decision, self._read_gap, self._hand_over, self._fill_failed))

    async def _read_gap(self, gap: Fetch) -> list[Message]:
        if gap.upto is None:  # never: a message gap ends at a signalled seq (catch-up is one query)
            return []
        return await self._fill_gap(gap.key, gap.after, gap.upto)

    def _hand_over(self, messages: list[Message]) -> None:
        for m in messages:
            self.send_wire(text_frame(encode(MessageEvent(message=m))))

    def _fill_failed(self, gap: Fetch) -> None:
        # the hole stays open (storage unreachable): the follower asks for it again, after a wait
        log.warning("gap fill failed for connection %s (attempt %d); retrying", self.id, gap.attempt + 1, exc_info=True)

    def catch_up(self, fetch: Callable[[dict[str, int]], Awaitable[list[Message]]]) -> None:
        """After a broker outage: fetch whatever came after our cursors and deliver it."""

        async def run() -> None:
            try:
                for m in await fetch(self.cursors.snapshot()):
                    self.deliver(m, None, None)
            except Exception:
                log.warning("catch-up failed for connection %s", self.id, exc_info=True)

        self._own_context().run(self._spawn, run())

    def _spawn(self, coro: Awaitable[None]) -> None:
        """Run ``coro`` as one of this connection's tasks (see :meth:`inflight`, :meth:`cancel_tasks`)."""
        tasks = self._tasks
        if tasks is None:
            tasks = self._tasks = Tasks()
        tasks.spawn(coro)

    def cancel_tasks(self) -> None:
        if self._tasks is not None:
            self._tasks.cancel()
