"""The blob store seam: where the hub keeps media bytes (already encrypted).

A :class:`BlobStore` holds opaque byte strings under keys. The hub only ever stores
ciphertext in it (every media variant is sealed under its conversation's data key before
it is put, :mod:`bankhub.media.sealing`), so a blob store needs no access control of its
own beyond keeping the bytes: whoever reads a bucket or a volume gets nothing readable.

Two implementations pass the same conformance test (``tests/integration/test_blob_conformance.py``):

* :class:`~bankhub.blobs.local.LocalBlobStore` — a directory, the default; nodes share it
  on a volume (writes are atomic: temp file, fsync, rename);
* :class:`~bankhub.blobs.s3.S3BlobStore` — S3-compatible object storage over HTTPS, each
  request signed with AWS Signature Version 4.

Keys are ``/``-separated ASCII paths of ``[A-Za-z0-9._-]`` segments (no empty, ``.`` or
``..`` segment, at most :data:`MAX_KEY_CHARS`): :func:`check_key` refuses anything else
with :class:`InvalidBlobKey`, so a key can never name a place outside the store.
"""

from __future__ import annotations

import re
from typing import Protocol, runtime_checkable

__all__ = ["BlobStore", "BlobError", "BlobNotFound", "BlobUnavailable", "InvalidBlobKey", "check_key", "MAX_KEY_CHARS"]

MAX_KEY_CHARS = 512
_SEGMENT = re.compile(r"[A-Za-z0-9._-]{1,128}")


class BlobError(Exception):
    """Base of the blob store's errors."""


class InvalidBlobKey(BlobError, ValueError):
    """A key that is not a safe relative path of allowed characters."""


class BlobNotFound(BlobError, KeyError):
    """No blob under this key."""


class BlobUnavailable(BlobError):
    """The store could not be reached or refused the operation (disk, network, credentials): retry later."""


def check_key(key: str) -> str:
    """``key`` if it is a valid blob key (see the module docstring); else :class:`InvalidBlobKey`."""
    if not isinstance(key, str) or not key or len(key) > MAX_KEY_CHARS:
        raise InvalidBlobKey("a blob key is 1 to 512 characters")
    for segment in key.split("/"):
        if segment in (".", "..") or not _SEGMENT.fullmatch(segment):
            raise InvalidBlobKey("a blob key is /-separated segments of [A-Za-z0-9._-], none of them . or ..")
    return key


@runtime_checkable
class BlobStore(Protocol):
    """Opaque bytes under keys. Every method may raise :class:`BlobUnavailable`; a bad key :class:`InvalidBlobKey`."""

    name: str
    """``"local"`` or ``"s3"`` (logs, ``/readyz``-style diagnostics)."""

    async def put(self, key: str, data: bytes) -> None:
        """Store ``data`` under ``key``, replacing what was there. Atomic: a reader sees the old or the new bytes whole."""
        ...

    async def get(self, key: str) -> bytes:
        """The bytes under ``key``; :class:`BlobNotFound` if there are none."""
        ...

    async def delete(self, key: str) -> None:
        """Remove ``key``; removing a key that does not exist is not an error."""
        ...

    async def exists(self, key: str) -> bool:
        """Whether a blob is stored under ``key``."""
        ...

    async def close(self) -> None:
        """Release connections (idempotent)."""
        ...
