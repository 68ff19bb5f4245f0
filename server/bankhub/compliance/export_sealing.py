"""An export zip at rest: sealed in chunks with AES-256-GCM under a data key of its own.

The built zip is the plaintext of many conversations, so the hub never keeps it in the clear:
each export gets a fresh data key (wrapped under the KEK by the key provider, like a
conversation's, :mod:`bankhub.crypto.keyring`), and the zip is sealed in chunks of
:data:`CHUNK_BYTES` so a download is opened and streamed a chunk at a time. A chunk is
``nonce (12 bytes) || ciphertext+tag``; its associated data binds it to the export, its
index and whether it is the last one, so chunks cannot be reordered, dropped, truncated at
a chunk boundary or moved to another export without failing authentication.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

from cryptography.exceptions import InvalidTag

from ..crypto.keyring import DataKey

__all__ = ["CHUNK_BYTES", "EXPORT_KEY_ID", "ExportUnreadable", "seal_export", "open_export", "seal_chunk", "open_chunk", "chunk_key"]

CHUNK_BYTES = 1 << 20
EXPORT_KEY_ID = "xdek1"
"""Stored with the export row: chunked AES-256-GCM under the export's own DEK."""

_NONCE = 12
_TAG = 16
_AD_PREFIX = b"bankhub/export/v1\x00"


class ExportUnreadable(Exception):
    """The stored export does not open under its key: tampered, truncated or not this export's."""


def _ad(export_id: str, index: int, last: bool) -> bytes:
    return _AD_PREFIX + uuid.UUID(export_id).bytes + index.to_bytes(8, "big") + (b"\x01" if last else b"\x00")


def chunk_key(prefix: str, index: int) -> str:
    """The blob key of chunk ``index`` of a sealed export stored under ``prefix``
    (``exports/<id>/<build token>``): one blob per chunk, so neither a build nor a download
    ever holds more than a chunk of the export in memory."""
    return f"{prefix}/{index:08d}"


def seal_chunk(key: DataKey, export_id: str, index: int, last: bool, data: bytes) -> bytes:
    """Chunk ``index`` of the export sealed: ``nonce || ciphertext+tag`` (``data`` at most
    :data:`CHUNK_BYTES`). The same form :func:`seal_export` concatenates."""
    if len(data) > CHUNK_BYTES:
        raise ValueError("a chunk holds at most CHUNK_BYTES")
    nonce = os.urandom(_NONCE)
    return nonce + key.aead.encrypt(nonce, data, _ad(export_id, index, last))


def open_chunk(key: DataKey, export_id: str, index: int, last: bool, sealed: bytes) -> bytes:
    """The plaintext of one sealed chunk; :class:`ExportUnreadable` unless it is chunk
    ``index`` (and the last one exactly when ``last``) of this export under this key."""
    if len(sealed) < _NONCE + _TAG or len(sealed) > _NONCE + CHUNK_BYTES + _TAG:
        raise ExportUnreadable("stored chunk has a wrong size")
    try:
        return key.aead.decrypt(sealed[:_NONCE], sealed[_NONCE:], _ad(export_id, index, last))
    except InvalidTag:
        raise ExportUnreadable("authentication failed") from None


def seal_export(key: DataKey, export_id: str, data: bytes) -> bytes:
    """The sealed form of ``data`` (an empty zip still has one, final, chunk)."""
    out = bytearray()
    chunks = [data[i : i + CHUNK_BYTES] for i in range(0, len(data), CHUNK_BYTES)] or [b""]
    for i, chunk in enumerate(chunks):
        nonce = os.urandom(_NONCE)
        out += nonce + key.aead.encrypt(nonce, chunk, _ad(export_id, i, i == len(chunks) - 1))
    return bytes(out)


def open_export(key: DataKey, export_id: str, stored: bytes) -> Iterator[bytes]:
    """The plaintext chunks of a sealed export, in order; :class:`ExportUnreadable` on any damage."""
    step = _NONCE + CHUNK_BYTES + _TAG
    count = max(1, -(-len(stored) // step))
    for i in range(count):
        part = stored[i * step : (i + 1) * step]
        if len(part) < _NONCE + _TAG:
            raise ExportUnreadable("stored export truncated")
        try:
            yield key.aead.decrypt(part[:_NONCE], part[_NONCE:], _ad(export_id, i, i == count - 1))
        except InvalidTag:
            raise ExportUnreadable("authentication failed") from None
