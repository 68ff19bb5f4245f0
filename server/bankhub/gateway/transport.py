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

Data frames can be written at once. An idle connection's frame (nothing queued, nothing
being sent) need not go through a writer task wake-up and an awaited ``send``: the
``bankhub.write_now`` ASGI extension frames and writes it synchronously while the transport
takes data without waiting, and says False otherwise (the caller then queues it). For a
notice fanned out to thousands of idle followers this halves the CPU per delivery.

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
from websockets.exceptions import InvalidState
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


class HubWebSocketProtocol(WebSocketsSansIOProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.close_timeout = 5.0
        self.last_heard = 0.0

    async def run_asgi(self) -> None:
        extensions: dict[str, Any] = self.scope.setdefault("extensions", {})  # type: ignore[assignment]
        extensions["bankhub.write_now"] = self.write_text_now
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

    def write_text_now(self, text: str) -> bool:
        """Frame and write ``text`` now if the transport takes data without waiting; else False."""
        if not self.handshake_complete or self.close_sent or self.initial_response is not None or self.disconnected:
            return False
        if not self.writable.is_set() or self.transport.is_closing():
            return False  # the peer is not keeping up: the caller queues (and bounds) it
        try:
            self.conn.send_text(text.encode())
        except InvalidState:
            return False
        self.transport.write(b"".join(self.conn.data_to_send()))
        return True

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
