"""A node's media state (``hub.media``): the store, the blob store, the URL keys.

Unlike the rest of this package it does I/O; what *acts* on it lives in
:mod:`bankhub.actions.media`.

**The media URL key.** ``BANKHUB_MEDIA_URL_KEY`` (base64 of 32 bytes) when set. Otherwise it
is derived from the key provider: the provider wraps a fixed 32-byte label under its active
KEK and the key is HMAC-SHA256 of the KEK id and those wrapped bytes. AES key wrap
(RFC 3394: the local key file, PKCS#11 ``CKM_AES_KEY_WRAP``) is deterministic, so every node
holding the same KEK derives the same key and nothing new has to be distributed; a provider
whose wrapping is randomised needs ``BANKHUB_MEDIA_URL_KEY``. After a KEK rotation the key
changes with it; a node still accepts URLs signed under the keys it derived before (they
expire within ``BANKHUB_MEDIA_URL_TTL_SECONDS`` anyway).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
from typing import Any

from ..blobs import BlobStore, make_blob_store
from ..crypto.keyring import Keyring
from ..settings import Settings
from ..storage.db import Database
from ..storage.keys import ConversationKeyStore
from ..storage.media import MediaStore

__all__ = ["MediaRuntime", "decode_url_key", "PROCESSING_SLOTS"]

_LABEL = hashlib.sha256(b"bankhub media url key v1").digest()
PROCESSING_SLOTS = 2
"""Uploads a node decodes and re-encodes at once (each in a worker thread)."""


def decode_url_key(text: str) -> bytes:
    """The 32 bytes of ``BANKHUB_MEDIA_URL_KEY``; ValueError naming the variable otherwise."""
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != 32:
        raise ValueError("BANKHUB_MEDIA_URL_KEY must be base64 of 32 bytes (bankhub keygen)")
    return raw


class MediaRuntime:
    """See the module docstring."""

    def __init__(self, db: Database, keyring: Keyring, settings: Settings, blobs: BlobStore | None = None) -> None:
        self.settings = settings
        self.keyring = keyring
        self.store = MediaStore(db)
        self.keys = ConversationKeyStore(db)
        self.blobs = blobs or make_blob_store(settings)
        self._fixed = decode_url_key(settings.media_url_key) if settings.media_url_key else None
        self._derived: dict[str, bytes] = {}
        # decoding a picture at the pixel cap takes ~3 bytes a pixel: a few at a time per node, the rest wait
        self.processing = asyncio.Semaphore(PROCESSING_SLOTS)

    async def _provider_call(self, fn: Any, *args: Any) -> Any:
        if getattr(self.keyring.provider, "blocking", True):
            return await asyncio.to_thread(fn, *args)
        return fn(*args)

    async def url_key(self) -> bytes:
        """The key new URLs are signed with (see the module docstring)."""
        if self._fixed is not None:
            return self._fixed
        provider = self.keyring.provider
        kek_id = str(await self._provider_call(provider.active_kek_id))
        key = self._derived.get(kek_id)
        if key is None:
            wrapped_under, wrapped = await self._provider_call(provider.wrap, _LABEL)
            key = hmac.new(_LABEL, str(wrapped_under).encode() + b"\x00" + bytes(wrapped), hashlib.sha256).digest()
            self._derived[kek_id] = key
        return key

    async def url_keys(self) -> list[bytes]:
        """Every key a URL may be signed with: the current one first."""
        current = await self.url_key()
        return [current, *(k for k in self._derived.values() if k != current)]

    async def close(self) -> None:
        """Release the blob store's connections (the node is stopping)."""
        await self.blobs.close()
