"""A WebSocket client that stops reading right after the handshake, as a frozen app does.

It is a raw socket with a small receive buffer (set before connecting, so the TCP window
stays small and backpressure reaches the hub soon). A test that reads what was sent after
the stall should give it a normal one (``rcvbuf=256 << 10``): behind a window of a few KiB,
Linux resumes a stalled loopback stream only at the pace of its zero-window probes, seconds
apart on a loaded machine, so the close frame can arrive after the hub gave up waiting
(``close_timeout``) and aborted the socket. It reads exactly the handshake
response and then nothing, until the test calls :meth:`StalledReader.read_until_closed`
to see what the hub had sent: the frames that got through before the stall and the close
frame (4008 for a slow consumer).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import socket
import time
from typing import Any

from .proxy import websocket_frames

__all__ = ["StalledReader"]


class StalledReader:
    def __init__(self, sock: socket.socket, data: bytes) -> None:
        self.sock = sock
        self.data = bytearray(data)  # everything received so far, the HTTP response included
        self.eof = False

    @classmethod
    async def connect(cls, port: int, token: str, *, rcvbuf: int = 4096) -> StalledReader:
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.setblocking(False)
        try:
            await loop.sock_connect(sock, ("127.0.0.1", port))
            key = base64.b64encode(os.urandom(16)).decode()
            await loop.sock_sendall(
                sock,
                (
                    f"GET /v1/ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                    f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                    f"Sec-WebSocket-Protocol: bankhub.v1\r\nAuthorization: Bearer {token}\r\n\r\n"
                ).encode(),
            )
            head = b""
            async with asyncio.timeout(10):
                while b"\r\n\r\n" not in head:  # byte by byte: read the response head and nothing more
                    chunk = await loop.sock_recv(sock, 1)
                    if not chunk:
                        raise ConnectionError(f"closed during the handshake: {head!r}")
                    head += chunk
            if not head.startswith(b"HTTP/1.1 101"):
                status = head.split(b"\r\n", 1)[0]
                raise ConnectionError(f"handshake refused: {status!r}")
        except BaseException:
            sock.close()
            raise
        return cls(sock, head)

    async def read_until_closed(self, timeout: float) -> None:
        """Read (fast) until the hub's close frame arrived or the connection ended."""
        loop = asyncio.get_running_loop()
        deadline = time.monotonic() + timeout
        while not self.eof and self.close_code() is None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            try:
                chunk = await asyncio.wait_for(loop.sock_recv(self.sock, 1 << 16), remaining)
            except (TimeoutError, asyncio.TimeoutError):
                return
            except OSError:  # reset: the hub gave up on us
                self.eof = True
                return
            if not chunk:
                self.eof = True
            self.data.extend(chunk)

    def frames(self) -> list[dict[str, Any]]:
        """The JSON text frames received so far (hello first)."""
        return [json.loads(p) for op, p in websocket_frames(bytes(self.data)) if op == 1]

    def close_code(self) -> int | None:
        for op, payload in websocket_frames(bytes(self.data)):
            if op == 8:
                return int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
        return None

    def close_reason(self) -> str:
        for op, payload in websocket_frames(bytes(self.data)):
            if op == 8:
                return payload[2:].decode("utf-8", "replace")
        return ""

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()
