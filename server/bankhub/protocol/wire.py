"""WebSocket framing of server frames, without I/O (RFC 6455 section 5.2).

A server's frames are never masked, so the bytes of one unfragmented text frame depend on
its payload alone: a frame fanned out to many sockets (a group message, a notice) is
framed once with :func:`text_frame` and the same bytes are written to every transport.
Only unfragmented text frames without extensions are built here (the hub negotiates no
compression); :func:`payload_of` reads such a frame back.
"""

from __future__ import annotations

__all__ = ["text_frame", "payload_of", "header_length"]

_FIN_TEXT = 0x81  # FIN set, opcode 0x1 (text); RSV bits clear: no extension


def text_frame(payload: bytes) -> bytes:
    """The wire bytes of one unmasked, unfragmented text frame carrying ``payload`` (UTF-8)."""
    n = len(payload)
    if n < 126:
        return bytes((_FIN_TEXT, n)) + payload
    if n < 65536:
        return bytes((_FIN_TEXT, 126, n >> 8, n & 0xFF)) + payload
    return bytes((_FIN_TEXT, 127)) + n.to_bytes(8, "big") + payload


def header_length(frame: bytes) -> int:
    """Bytes of the header of a frame built by :func:`text_frame`."""
    n = frame[1] & 0x7F
    return 2 if n < 126 else 4 if n == 126 else 10


def payload_of(frame: bytes) -> str:
    """The text a frame built by :func:`text_frame` carries."""
    return frame[header_length(frame) :].decode()
