"""The optional virus scan: ClamAV's clamd, spoken to with its ``INSTREAM`` command.

With ``BANKHUB_MEDIA_CLAMD`` set (``host:port``, ``[v6addr]:port``, or ``unix:/path``), each
upload is stored ``quarantined`` and served to nobody until clamd has found every stored
variant clean (the bytes a member would receive); one finding makes it ``rejected``. A
scanner that cannot be reached or answers an error leaves the item in quarantine: the
media sweep (``BANKHUB_MEDIA_SCAN_SECONDS``) tries again.

The protocol (clamd(8)): send ``zINSTREAM\\0``, then the data as chunks each prefixed by its
length (4 bytes, network order), then a zero-length chunk; clamd answers one line ending in
``\\0``: ``stream: OK`` or ``stream: <signature> FOUND`` (or ``... ERROR``, e.g. over its
``StreamMaxLength``).
"""

from __future__ import annotations

import asyncio
import struct
from dataclasses import dataclass

__all__ = ["ScanResult", "ScannerUnavailable", "scan", "parse_address", "CHUNK_BYTES"]

CHUNK_BYTES = 64 * 1024
_MAX_REPLY = 4096


class ScannerUnavailable(Exception):
    """clamd could not be reached, timed out, or answered an error: the item stays in quarantine."""


@dataclass(frozen=True)
class ScanResult:
    clean: bool
    signature: str | None = None  # what clamd found (logged; never shown to users)


def parse_address(address: str) -> tuple[str, str | int]:
    """``("unix", path)`` or ``(host, port)`` from the setting's text."""
    if address.startswith("unix:"):
        return "unix", address[5:]
    if address.startswith("/"):
        return "unix", address
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise ValueError("BANKHUB_MEDIA_CLAMD must be host:port or unix:/path")
    return host.strip("[]"), int(port)


async def scan(address: str, data: bytes, *, timeout: float = 30.0) -> ScanResult:
    """Scan ``data`` with the clamd at ``address``; :class:`ScannerUnavailable` when it cannot say."""
    host, port = parse_address(address)
    try:
        async with asyncio.timeout(timeout):
            if host == "unix":
                reader, writer = await asyncio.open_unix_connection(str(port))
            else:
                reader, writer = await asyncio.open_connection(host, int(port))
            try:
                writer.write(b"zINSTREAM\x00")
                for start in range(0, len(data), CHUNK_BYTES):
                    chunk = data[start : start + CHUNK_BYTES]
                    writer.write(struct.pack(">I", len(chunk)) + chunk)
                    await writer.drain()
                writer.write(struct.pack(">I", 0))
                await writer.drain()
                reply = b""
                while b"\x00" not in reply and len(reply) < _MAX_REPLY:
                    part = await reader.read(_MAX_REPLY)
                    if not part:
                        break
                    reply += part
            finally:
                writer.close()
                try:
                    await writer.wait_closed()
                except OSError:
                    pass
    except (OSError, TimeoutError) as exc:
        raise ScannerUnavailable(f"clamd: {type(exc).__name__}") from None
    text = reply.split(b"\x00", 1)[0].decode("utf-8", "replace").strip()
    if text.endswith(" OK") or text == "OK":
        return ScanResult(True)
    if text.endswith(" FOUND"):
        found = text[:-6]
        found = found.split(":", 1)[1].strip() if ":" in found else found
        return ScanResult(False, found[:200])
    raise ScannerUnavailable("clamd answered an error" if text else "clamd closed without an answer")
