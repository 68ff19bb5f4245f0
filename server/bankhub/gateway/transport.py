"""uvicorn's protocols, hardened: the sans-I/O WebSocket protocol and the httptools HTTP protocol.

Closing never waits on a reader.

uvicorn's ``send`` waits until the transport is writable, which is right for data
frames (it is what bounds our per-connection memory) but wrong for the close frame of
a slow consumer: the peer stopped reading, so the transport never becomes writable and
the close would wait forever. Here a ``websocket.close`` skips that wait — the close
frame is queued behind the data already buffered — and a peer that still has not
drained it after ``close_timeout`` is aborted, releasing the buffers.

A refused handshake is complete once its HTTP response is sent: uvicorn would otherwise
log "ASGI callable returned without completing handshake" as an error for every
refusal (401, 403, ...), drowning real errors.

Data frames are written as bytes framed once. The ``bankhub.outlet`` ASGI extension is the
protocol itself (:class:`HubWebSocketProtocol`, see :class:`~bankhub.delivery.connection.Outlet`):
:meth:`~HubWebSocketProtocol.write_wire` writes an already framed server frame
(:func:`bankhub.protocol.wire.text_frame`; server frames are unmasked, so a frame fanned out
to many sockets is framed once and the same bytes go to every transport) synchronously while
the socket is open and the transport takes data without waiting, and says False otherwise
(the connection then queues it, bounded, and waits with
:meth:`~HubWebSocketProtocol.until_writable`). No ASGI ``send`` and no task wake-up per frame.
A socket whose close was sent or received, or whose transport is closing, is never written.
The extension is offered only while no WebSocket extension (compression) is configured.

Memory per open socket is kept small: uvicorn's receive queue (an :class:`asyncio.Queue`,
three deques) and its ``writable`` event (a deque) are replaced by equivalents that allocate
only while something waits, and the handshake's parsed request and response are let go
once the socket is accepted.

The time of the client's last frame is kept. The ``bankhub.last_heard`` ASGI extension
gives the loop time (``loop.time()``) at which the last frame came from the client: a
data frame or a WebSocket ping. A pong does not count: any client library answers the
server's keep-alive pings by itself, so counting pongs would make no socket ever idle.
The endpoint closes a connection quiet for longer than ``limits.idle_timeout``.

A request must arrive in time. uvicorn waits for request headers without limit: a
client that connects and never completes its request (slow headers, a body that never
ends) holds a socket forever. :class:`HubHttpProtocol` gives every request
``request_timeout`` seconds from its first byte (from the connection for the first one)
until it is complete; a request still incomplete then is answered 408 (if nothing of it
reached the app yet) and the connection is closed. A WebSocket upgrade is complete when
its headers are.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.frames import Frame

__all__ = ["HubWebSocketProtocol", "HubHttpProtocol", "http_protocol"]

_REQUEST_TIMEOUT_RESPONSE = (
    b"HTTP/1.1 408 Request Timeout\r\n"
    b"content-type: application/problem+json\r\n"
    b"connection: close\r\n"
    b"content-length: %d\r\n\r\n%s"
)
_REQUEST_TIMEOUT_BODY = (
    b'{"type":"https://bankhub.dev/problems/request_timeout","title":"Request Timeout","status":408,'
    b'"code":"request_timeout","detail":"the request was not complete in time"}'
)


class HubHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a deadline for receiving each request."""

    request_timeout: float = 10.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._request_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_request_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_request_timer()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._request_timer is None:  # the next request on a kept-alive connection
            self._arm_request_timer()

    def on_message_complete(self) -> None:
        self._disarm_request_timer()
        super().on_message_complete()

    def handle_websocket_upgrade(self) -> None:
        self._disarm_request_timer()  # the upgrade request is complete; the WebSocket takes over
        super().handle_websocket_upgrade()

    def _arm_request_timer(self) -> None:
        self._request_timer = self.loop.call_later(self.request_timeout, self._request_timed_out)

    def _disarm_request_timer(self) -> None:
        if self._request_timer is not None:
            self._request_timer.cancel()
            self._request_timer = None

    def _request_timed_out(self) -> None:
        self._request_timer = None
        if self.transport.is_closing():
            return
        if self.cycle is None or self.cycle.response_complete:
            # the headers never completed: nothing reached the app, so answering is ours
            body = _REQUEST_TIMEOUT_BODY
            self.transport.write(_REQUEST_TIMEOUT_RESPONSE % (len(body), body))
        self.transport.close()


def http_protocol(request_timeout: float) -> type[HubHttpProtocol]:
    """The HTTP protocol class for uvicorn with this request timeout (seconds)."""

    class Configured(HubHttpProtocol):
        pass

    Configured.request_timeout = request_timeout
    return Configured


class _Flag:
    """:class:`asyncio.Event`'s ``set``/``clear``/``is_set``/``wait`` for one connection, with
    no waiter deque until someone waits (an idle connection never does)."""

    __slots__ = ("_set", "_waiters")

    def __init__(self, value: bool = True) -> None:
        self._set = value
        self._waiters: list[asyncio.Future[None]] | None = None

    def is_set(self) -> bool:
        return self._set

    def set(self) -> None:
        self._set = True
        waiters, self._waiters = self._waiters, None
        if waiters:
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)

    def clear(self) -> None:
        self._set = False

    async def wait(self) -> None:
        if self._set:
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self._waiters is None:
            self._waiters = []
        self._waiters.append(waiter)
        try:
            await waiter
        finally:
            if self._waiters is not None and waiter in self._waiters:
                self._waiters.remove(waiter)


class _Inbox:
    """The ASGI receive queue of one connection (``put_nowait``, ``get``, ``empty`` of
    :class:`asyncio.Queue`, unbounded as uvicorn's is): a list only while something waits in
    it, and no deques. uvicorn pauses reading after each message, so it holds a few at most."""

    __slots__ = ("_items", "_ready")

    def __init__(self) -> None:
        self._items: list[Any] | None = None
        self._ready = _Flag(False)

    def put_nowait(self, item: Any) -> None:
        if self._items is None:
            self._items = [item]
        else:
            self._items.append(item)
        self._ready.set()

    def empty(self) -> bool:
        return not self._items

    async def get(self) -> Any:
        while not self._items:
            self._ready.clear()
            await self._ready.wait()
        items = self._items
        item = items.pop(0)
        if not items:
            self._items = None
        return item


class HubWebSocketProtocol(WebSocketsSansIOProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.close_timeout = 5.0
        self.last_heard = 0.0
        # held for as long as the socket is open: the same behaviour in less memory
        self.queue = _Inbox()  # type: ignore[assignment]
        self.writable = self._writable = _Flag()  # type: ignore[assignment]

    async def run_asgi(self) -> None:
        extensions: dict[str, Any] = self.scope.setdefault("extensions", {})  # type: ignore[assignment]
        if not self.config.ws_per_message_deflate:  # pre-framed bytes carry no compression
            extensions["bankhub.outlet"] = self
        extensions["bankhub.last_heard"] = self.heard_at
        self.last_heard = self.loop.time()
        await super().run_asgi()

    def heard_at(self) -> float:
        """Loop time of the client's last data frame or ping (of the handshake before any)."""
        return self.last_heard

    # the client's frames: each one stamps the time (a pong does not, see the module docs)
    def handle_text(self, event: Frame) -> None:
        self.last_heard = self.loop.time()
        super().handle_text(event)

    def handle_bytes(self, event: Frame) -> None:
        self.last_heard = self.loop.time()
        super().handle_bytes(event)

    def handle_cont(self, event: Frame) -> None:
        self.last_heard = self.loop.time()
        super().handle_cont(event)

    def handle_ping(self) -> None:
        self.last_heard = self.loop.time()
        super().handle_ping()

    def open_for_data(self) -> bool:
        """Data frames may still be written (now or once writable): no close sent or received."""
        return (
            self.handshake_complete
            and not self.close_sent
            and not self.disconnected
            and self.initial_response is None
            and not self.transport.is_closing()
        )

    def ready(self) -> bool:
        """:meth:`write_wire` would write now: the socket is open and the transport takes data."""
        return (
            self.writable.is_set()
            and not self.close_sent
            and not self.disconnected
            and self.initial_response is None
            and self.handshake_complete
            and not self.transport.is_closing()
        )

    def write_wire(self, data: bytes) -> bool:
        """Write framed server frames (one or more, whole) now if :meth:`ready`; else False
        (nothing written). A write that raises aborts the transport (the socket is broken:
        :meth:`open_for_data` is then False, so no writer waits on it) and says False; it
        never raises into the fan-out that called it."""
        # :meth:`ready`, inlined: this runs once per delivery of a fan-out
        if (
            self._writable._set
            and not self.close_sent
            and not self.disconnected
            and self.initial_response is None
            and self.handshake_complete
        ):
            transport = self.transport
            if not transport.is_closing():
                try:
                    transport.write(data)
                except Exception:
                    transport.abort()
                    return False
                return True
        return False

    async def until_writable(self) -> None:
        """Return once the transport takes data again (at once if it does; also once the socket is lost)."""
        await self.writable.wait()

    async def send(self, message: Any) -> None:
        if message["type"] == "websocket.close" and self.handshake_complete and not self.writable.is_set():
            self.writable.set()  # let the close frame through; data senders were cancelled first
            await super().send(message)
            if self.close_timer is not None:
                self.close_timer.cancel()
            self.close_timer = self.loop.call_later(self.close_timeout, self.transport.abort)
            return
        await super().send(message)
        if message["type"] == "websocket.http.response.body" and not message.get("more_body", False):
            self.handshake_complete = True
        elif message["type"] == "websocket.accept" and self.handshake_complete:
            # the handshake's request and response (their headers) are not read again
            del self.request, self.response
