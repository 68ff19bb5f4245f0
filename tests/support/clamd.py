"""A small server speaking clamd's INSTREAM protocol, standing in for ClamAV in tests.

ClamAV itself cannot be installed here with its signature database (offline), so this
server answers as clamd does: ``stream: OK`` for clean data, and
``stream: Eicar-Test-Signature FOUND`` for data holding the EICAR test string (the one
signature every ClamAV ships). It reads the same wire format: ``zINSTREAM\\0`` (or
``nINSTREAM\\n``), chunks prefixed by a 4-byte big-endian length, a zero-length chunk.
``failing`` makes it answer clamd's error line instead of a verdict, ``hanging`` makes it
answer nothing at all; ``stop`` closes it.
"""

from __future__ import annotations

import asyncio
import struct

from .media_files import EICAR

__all__ = ["FakeClamd", "start_clamd"]


class FakeClamd:
    def __init__(self) -> None:
        self.server: asyncio.Server | None = None
        self.address = ""
        self.scanned: list[bytes] = []
        self.failing = False
        self.hanging = False
        self._released = asyncio.Event()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            command = await reader.readuntil(b"\x00") if (await reader.readexactly(1)) == b"z" else await reader.readuntil(b"\n")
            if not command.startswith(b"INSTREAM"):
                writer.write(b"UNKNOWN COMMAND\x00")
                return
            data = bytearray()
            while True:
                (length,) = struct.unpack(">I", await reader.readexactly(4))
                if length == 0:
                    break
                data += await reader.readexactly(length)
            self.scanned.append(bytes(data))
            if self.hanging:
                await self._released.wait()  # a scanner that never answers (until stopped)
                return
            if self.failing:
                writer.write(b"INSTREAM size limit exceeded. ERROR\x00")
                await writer.drain()
                return
            found = EICAR in data
            writer.write(b"stream: Eicar-Test-Signature FOUND\x00" if found else b"stream: OK\x00")
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def stop(self) -> None:
        self._released.set()
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
            self.server = None


async def start_clamd(unix_path: str | None = None) -> FakeClamd:
    """A fake clamd on 127.0.0.1 and a free port (or on the socket ``unix_path``); ``.address`` is
    what BANKHUB_MEDIA_CLAMD takes (``host:port`` or ``unix:/path``)."""
    clamd = FakeClamd()
    if unix_path is not None:
        clamd.server = await asyncio.start_unix_server(clamd._serve, unix_path)
        clamd.address = f"unix:{unix_path}"
        return clamd
    clamd.server = await asyncio.start_server(clamd._serve, "127.0.0.1", 0)
    host, port = clamd.server.sockets[0].getsockname()[:2]
    clamd.address = f"{host}:{port}"
    return clamd
