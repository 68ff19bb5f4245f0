"""uvicorn's sans-I/O WebSocket protocol, with two changes.

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
"""

from __future__ import annotations

from typing import Any

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.exceptions import InvalidState

__all__ = ["HubWebSocketProtocol"]


class HubWebSocketProtocol(WebSocketsSansIOProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.close_timeout = 5.0

    async def run_asgi(self) -> None:
        extensions: dict[str, Any] = self.scope.setdefault("extensions", {})  # type: ignore[assignment]
        extensions["bankhub.write_now"] = self.write_text_now
        await super().run_asgi()

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
