"""A TCP proxy on loopback whose connections a test can cut: a real network fault, not a mock.

Besides cutting (abort both sides, no close frame), a test can

* ``hold`` bytes in one direction (they are read and kept back, as by a stuck middlebox;
  ``release`` delivers them, ``cut`` throws them away),
* ``stall`` the server-to-client direction (the proxy stops reading, so TCP backpressure
  reaches the server, as with a client that stopped reading),
* refuse new connections (``refusing``) or point new connections at another port
  (``target_port``: each connection is made to the port set when it arrives).

Every connection is kept as a :class:`Link` with the bytes it delivered each way, so a
test can read the WebSocket frames that really crossed the wire (:meth:`Link.client_frames`,
:meth:`Link.server_frames`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

__all__ = ["CuttableProxy", "Link", "websocket_frames"]


def websocket_frames(data: bytes, *, handshake: bool = True) -> list[tuple[int, bytes]]:
    """``(opcode, payload)`` of each complete WebSocket message in ``data``, the bytes of one
    direction of a connection (``handshake``: starting with the HTTP upgrade, skipped; no
    frames follow a refused one). Masked (client) frames are unmasked; fragments are joined;
    a trailing incomplete frame is left out."""
    i = 0
    if handshake:
        end = data.find(b"\r\n\r\n")
        if end < 0 or (data.startswith(b"HTTP/") and not data.startswith(b"HTTP/1.1 101")):
            return []
        i = end + 4
    out: list[tuple[int, bytes]] = []
    partial: tuple[int, bytearray] | None = None
    while i + 2 <= len(data):
        b0, b1 = data[i], data[i + 1]
        j = i + 2
        n = b1 & 0x7F
        if n == 126:
            if j + 2 > len(data):
                break
            n = int.from_bytes(data[j : j + 2], "big")
            j += 2
        elif n == 127:
            if j + 8 > len(data):
                break
            n = int.from_bytes(data[j : j + 8], "big")
            j += 8
        mask = b""
        if b1 & 0x80:
            if j + 4 > len(data):
                break
            mask = data[j : j + 4]
            j += 4
        if j + n > len(data):
            break
        payload = data[j : j + n]
        if mask:
            key = (mask * (n // 4 + 1))[:n]
            payload = bytes(a ^ b for a, b in zip(payload, key, strict=True))
        i = j + n
        opcode, fin = b0 & 0x0F, bool(b0 & 0x80)
        if opcode >= 8:  # control frames are never fragmented
            out.append((opcode, payload))
            continue
        if opcode != 0:
            partial = (opcode, bytearray())
        if partial is None:
            continue
        partial[1].extend(payload)
        if fin:
            out.append((partial[0], bytes(partial[1])))
            partial = None
    return out


def _json_frames(data: bytes, *, handshake: bool = True) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for opcode, payload in websocket_frames(data, handshake=handshake):
        if opcode == 1:
            obj = json.loads(payload)
            if isinstance(obj, dict):
                out.append(obj)
    return out


class Link:
    """One connection through the proxy, and what it delivered each way."""

    def __init__(self, client: asyncio.StreamWriter, upstream: asyncio.StreamWriter) -> None:
        self.client = client
        self.upstream = upstream
        self.up = bytearray()  # bytes delivered to the target
        self.down = bytearray()  # bytes delivered to the client
        self.held_up = bytearray()
        self.held_down = bytearray()
        self.closed = False

    @property
    def request_line(self) -> str:
        """The first line the client sent (``GET /v1/ws HTTP/1.1`` for a WebSocket)."""
        return bytes(self.up.split(b"\r\n", 1)[0]).decode("latin-1")

    @property
    def request_head(self) -> str:
        """The client's HTTP request line and headers."""
        return bytes(self.up.split(b"\r\n\r\n", 1)[0]).decode("latin-1")

    @property
    def is_websocket(self) -> bool:
        return self.request_line.startswith("GET ") and "/v1/ws" in self.request_line

    def client_frames(self) -> list[dict[str, Any]]:
        """The JSON text frames the client sent that reached the target."""
        return _json_frames(bytes(self.up))

    def server_frames(self) -> list[dict[str, Any]]:
        """The JSON text frames the target sent that reached the client."""
        return _json_frames(bytes(self.down))

    def held_client_frames(self) -> list[dict[str, Any]]:
        """The JSON text frames the client sent that are held back right now (when the
        handshake went through before the hold)."""
        return _json_frames(bytes(self.held_up), handshake=False)

    def held_server_frames(self) -> list[dict[str, Any]]:
        """The JSON text frames the target sent that are held back right now."""
        return _json_frames(bytes(self.held_down), handshake=False)

    def server_close_code(self) -> int | None:
        """The code of the close frame the target sent that reached the client, if any."""
        for opcode, payload in websocket_frames(bytes(self.down)):
            if opcode == 8:
                return int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
        return None

    def abort(self) -> None:
        self.closed = True
        self.client.transport.abort()
        self.upstream.transport.abort()


class CuttableProxy:
    def __init__(self, target_port: int) -> None:
        self.target_port = target_port  # read for every new connection: may be changed
        self.refusing = False  # abort new connections at once
        self.port = 0
        self.cuts = 0
        self.links: list[Link] = []
        self._server: asyncio.Server | None = None
        self._live: set[Link] = set()
        self._hold_up = False
        self._hold_down = False
        self._hold_frames_up = False
        self._flowing_down = asyncio.Event()
        self._flowing_down.set()

    async def start(self) -> CuttableProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_links(self) -> list[Link]:
        """The WebSocket connections made so far, oldest first."""
        return [link for link in self.links if link.is_websocket]

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.refusing:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.transport.abort()
            return
        link = Link(writer, up_writer)
        self.links.append(link)
        self._live.add(link)
        try:
            await asyncio.gather(self._pipe(link, reader, up=True), self._pipe(link, up_reader, up=False))
        finally:
            self._live.discard(link)
            link.abort()

    async def _pipe(self, link: Link, reader: asyncio.StreamReader, *, up: bool) -> None:
        dest = link.upstream if up else link.client
        with contextlib.suppress(Exception):
            while True:
                if not up:
                    await self._flowing_down.wait()
                data = await reader.read(65536)
                if not data:
                    break
                held = self._hold_up or (self._hold_frames_up and b"\r\n\r\n" in link.up) if up else self._hold_down
                if held:
                    (link.held_up if up else link.held_down).extend(data)
                    continue
                (link.up if up else link.down).extend(data)
                dest.write(data)
                await dest.drain()
        dest.transport.abort()

    # --- faults ------------------------------------------------------------------------

    def hold(self, *, up: bool = False, down: bool = False) -> None:
        """Keep back the bytes sent client-to-target (``up``) and/or target-to-client
        (``down``) on every connection, current and new, until :meth:`release` or :meth:`cut`."""
        self._hold_up = self._hold_up or up
        self._hold_down = self._hold_down or down

    def hold_frames(self) -> None:
        """Keep back what clients send once their request head went through: new
        connections complete the WebSocket handshake, then their frames stay here until
        :meth:`release` or :meth:`cut` (the server has registered the connection while the
        client's first request has not reached it)."""
        self._hold_frames_up = True

    def held(self, *, up: bool) -> int:
        """How many bytes are kept back in that direction right now."""
        return sum(len(link.held_up if up else link.held_down) for link in self._live)

    def stall(self) -> None:
        """Stop reading from the target on every connection (TCP backpressure on the server)."""
        self._flowing_down.clear()

    def release(self) -> None:
        """Deliver what was held, in order, and let everything flow again."""
        for link in list(self._live):
            for buf, dest, log in ((link.held_up, link.upstream, link.up), (link.held_down, link.client, link.down)):
                if buf and not link.closed:
                    log.extend(buf)
                    dest.write(bytes(buf))
                buf.clear()
        self._hold_up = self._hold_down = self._hold_frames_up = False
        self._flowing_down.set()

    def cut(self) -> int:
        """Abort every connection through the proxy (both directions, no close frame; held
        bytes are lost). Later connections flow freely. Returns how many were cut."""
        links = list(self._live)
        for link in links:
            link.abort()
        self._hold_up = self._hold_down = self._hold_frames_up = False
        self._flowing_down.set()
        self.cuts += len(links)
        return len(links)

    # --- waiting -----------------------------------------------------------------------

    async def wait_connected(self, timeout: float = 10.0) -> None:
        """Wait until at least one connection runs through the proxy."""
        await self._wait(lambda: bool(self._live), timeout, "nothing reconnected through the proxy")

    async def wait_ws_links(self, count: int, timeout: float = 10.0) -> Link:
        """Wait until ``count`` WebSocket connections were made through the proxy; returns the last."""
        await self._wait(lambda: len(self.ws_links) >= count, timeout, f"fewer than {count} WebSocket connections")
        return self.ws_links[count - 1]

    async def wait_held(self, *, up: bool, more_than: int = 0, timeout: float = 10.0) -> int:
        """Wait until more than ``more_than`` bytes are held in that direction; returns how many."""
        await self._wait(lambda: self.held(up=up) > more_than, timeout, "nothing was held")
        return self.held(up=up)

    @staticmethod
    async def _wait(done: Any, timeout: float, what: str) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not done():
            if loop.time() > deadline:
                raise TimeoutError(what)
            await asyncio.sleep(0.005)

    async def close(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
