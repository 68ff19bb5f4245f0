"""A tiny round-robin TCP load balancer on loopback, in front of several hub nodes.

What a real one (HAProxy, nginx, a cloud LB) does in front of ``bankhub serve`` nodes,
reduced to what the chaos tests need:

* **Round robin, per kind of request.** The balancer reads the request head (HTTP/1.1:
  the client speaks first) and keeps one rotation for WebSocket upgrades (``/v1/ws``) and
  one for plain HTTP, so sockets spread evenly over the nodes even though every SDK client
  also makes HTTP calls. After the head, bytes are copied both ways unchanged.
* **Dead backends are skipped.** A backend whose health check (``GET /readyz``, every
  ``health_interval`` seconds) failed twice in a row is passed over while another one is
  healthy (one success brings it back), and a backend that refuses the TCP connection (a
  killed node) is skipped at once and marked down. When every backend looks down, each is still tried in turn (health checks fail
  during a storage or broker outage, when connecting is still right).
* When a backend connection ends (the node died or closed it), the client's connection
  is closed too: the client sees what it would see behind a real balancer.
* :meth:`RoundRobinBalancer.hold_responses` keeps back what a backend sends to its
  clients (read and kept, as by a congested path), so a test can have a node die while
  the answers to work it has done are still on their way: they are lost with it.

:attr:`routed` records which backend each connection went to.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, field

__all__ = ["Backend", "RoundRobinBalancer"]

_MAX_HEAD = 64 * 1024


@dataclass(eq=False)
class Backend:
    port: int
    name: str
    up: bool = True
    failed_checks: int = 0  # health checks failed in a row
    holding: bool = False  # keep back what it sends to clients (see hold_responses)
    held_bytes: int = 0
    connections: int = 0  # open right now
    served: int = 0  # in total
    _writers: set[asyncio.StreamWriter] = field(default_factory=set, repr=False)


class RoundRobinBalancer:
    def __init__(self, backends: Sequence[tuple[str, int]], *, health_interval: float | None = 0.2) -> None:
        self.backends = [Backend(port, name) for name, port in backends]
        self.health_interval = health_interval
        self.port = 0
        self.routed: list[tuple[str, str]] = []  # (kind, backend name) per connection, in order
        self._next = {"ws": 0, "http": 0}
        self._server: asyncio.Server | None = None
        self._health: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> RoundRobinBalancer:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        if self.health_interval:
            self._health = asyncio.create_task(self._health_loop(), name="balancer-health")
        return self

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/v1/ws"

    def backend(self, name: str) -> Backend:
        return next(b for b in self.backends if b.name == name)

    # --- routing -------------------------------------------------------------------------

    def _candidates(self, kind: str) -> list[Backend]:
        n = len(self.backends)
        start = self._next[kind]
        self._next[kind] = (start + 1) % n
        rotation = [self.backends[(start + i) % n] for i in range(n)]
        healthy = [b for b in rotation if b.up]
        return healthy + [b for b in rotation if not b.up]

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            await self._serve(reader, writer)
        finally:
            if task is not None:
                self._tasks.discard(task)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, OSError):
            writer.transport.abort()
            return
        first = head.split(b"\r\n", 1)[0]
        kind = "ws" if first.startswith(b"GET ") and b"/v1/ws" in first and b"upgrade: websocket" in head.lower() else "http"
        for backend in self._candidates(kind):
            try:
                up_reader, up_writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", backend.port), 1.0)
            except (OSError, TimeoutError):
                backend.up = False  # a killed node refuses connections: skip it until it answers again
                continue
            break
        else:
            writer.transport.abort()
            return
        self.routed.append((kind, backend.name))
        backend.connections += 1
        backend.served += 1
        backend._writers.add(writer)
        try:
            up_writer.write(head)
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer, backend))
        finally:
            backend.connections -= 1
            backend._writers.discard(writer)
            writer.transport.abort()
            up_writer.transport.abort()

    def hold_responses(self, name: str) -> None:
        """From now on, what backend ``name`` sends is kept back from the clients (never
        delivered: it is dropped when the connection ends)."""
        self.backend(name).holding = True

    # --- health --------------------------------------------------------------------------

    async def _health_loop(self) -> None:
        assert self.health_interval is not None
        while True:
            results = await asyncio.gather(*(_ready(b.port) for b in self.backends))
            for backend, ok in zip(self.backends, results, strict=True):
                backend.failed_checks = 0 if ok else backend.failed_checks + 1
                if ok or backend.failed_checks >= 2:
                    backend.up = ok
            await asyncio.sleep(self.health_interval)

    # --- shutdown ------------------------------------------------------------------------

    async def close(self) -> None:
        if self._health is not None:
            self._health.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._health
        if self._server is not None:
            self._server.close()
        for backend in self.backends:
            for w in list(backend._writers):
                w.transport.abort()
        # the connection tasks end by themselves once their sockets are gone (cancelling a
        # start_server handler makes asyncio log an error); cancel only a straggler
        if self._tasks:
            _, pending = await asyncio.wait(list(self._tasks), timeout=2)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, held_by: Backend | None = None) -> None:
    with contextlib.suppress(Exception):
        while data := await reader.read(65536):
            if held_by is not None and held_by.holding:
                held_by.held_bytes += len(data)
                continue
            writer.write(data)
            await writer.drain()
    # one side ended (EOF, reset, or the node died): end the whole connection, as a
    # balancer does when its backend goes away
    writer.transport.abort()


async def _ready(port: int) -> bool:
    """True when ``GET /readyz`` on the backend answers 200 within a second."""
    try:
        async with asyncio.timeout(1.0):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            try:
                writer.write(b"GET /readyz HTTP/1.1\r\nHost: balancer\r\nConnection: close\r\n\r\n")
                status = await reader.readline()
            finally:
                writer.transport.abort()
    except (OSError, TimeoutError):
        return False
    return status.startswith(b"HTTP/1.1 200")
