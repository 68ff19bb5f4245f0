"""A TCP hop in front of a Postgres that listens on a unix socket, as a proxy or a
failover address is in production.

Bytes are copied both ways unchanged. When Postgres ends a session (a shutdown, a
terminated backend), its last words (the ``FATAL`` error) reach the client at once, but
the client side is closed only ``linger`` seconds later: the client keeps a connection
that looks open while the server is gone, as it does behind a proxy that closes lazily or
when the teardown of the TCP connection is slower than the error before it. A client must
treat that connection as unusable, not as a bug.

While the socket file is missing (Postgres stopped), new connections are closed at once.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

__all__ = ["PostgresTcpHop"]


class PostgresTcpHop:
    def __init__(self, socket_dir: Path, *, pg_port: int = 5432, linger: float = 0.5) -> None:
        self.socket_path = socket_dir / f".s.PGSQL.{pg_port}"
        self.linger = linger
        self.port = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> PostgresTcpHop:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def dsn(self, database: str = "bankhub") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}?sslmode=disable"

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        self._writers.add(writer)
        try:
            try:
                up_reader, up_writer = await asyncio.open_unix_connection(str(self.socket_path))
            except OSError:
                writer.transport.abort()
                return
            self._writers.add(up_writer)
            try:
                await asyncio.gather(self._pipe(reader, up_writer, linger=0.0), self._pipe(up_reader, writer, linger=self.linger))
            finally:
                up_writer.transport.abort()
                writer.transport.abort()
                self._writers.discard(up_writer)
        finally:
            self._writers.discard(writer)
            if task is not None:
                self._tasks.discard(task)

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, linger: float) -> None:
        with contextlib.suppress(Exception):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        if linger:
            await asyncio.sleep(linger)  # the server is gone; the client learns it a moment later
        writer.transport.abort()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for w in list(self._writers):
            w.transport.abort()
        # the connection tasks end by themselves once their sockets are gone (cancelling a
        # start_server handler makes asyncio log an error); cancel only a straggler
        if self._tasks:
            _, pending = await asyncio.wait(list(self._tasks), timeout=2 * self.linger + 1)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
