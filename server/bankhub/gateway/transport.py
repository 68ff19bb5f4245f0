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
"""

from __future__ import annotations

from typing import Any

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

__all__ = ["HubWebSocketProtocol"]


class HubWebSocketProtocol(WebSocketsSansIOProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.close_timeout = 5.0

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
