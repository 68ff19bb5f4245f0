"""Per-conversation data keys (DEKs): creation, unwrapping and the unwrapped-DEK cache.

A DEK is 32 random bytes (AES-256-GCM) created the first time a conversation stores a
message, wrapped by the :class:`~bankhub.crypto.keys.KeyProvider` and stored only in that
wrapped form (``conversation_keys``). Readers get the wrapped bytes with every row they
read (a JOIN), and the keyring turns them back into a :class:`DataKey`.

The cache of unwrapped DEKs is a bounded LRU keyed by ``(kek_id, wrapped bytes)`` — never
by conversation id alone. That is what makes rotation and shredding need no invalidation
on any node: a re-wrapped DEK arrives with new bytes (a miss, unwrapped once under the new
KEK), and a shredded conversation arrives with no bytes at all, so its cached entry can
never be reached again and simply ages out.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import TypeVar

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .keys import KeyProvider

__all__ = ["DataKey", "Keyring", "KeyringError", "DEK_BYTES", "call_provider"]

log = logging.getLogger("bankhub.crypto")

DEK_BYTES = 32
T = TypeVar("T")


async def call_provider(provider: KeyProvider, fn: Callable[..., T], *args: object) -> T:
    """Call ``fn`` (a method of ``provider``): in a worker thread unless the provider says it
    never blocks (``blocking = False``, e.g. a local key file); a network HSM/KMS may block."""
    if getattr(provider, "blocking", True):
        return await asyncio.to_thread(fn, *args)
    return fn(*args)


class KeyringError(Exception):
    """The key provider could not wrap or unwrap a DEK (HSM down, KEK missing, bad bytes)."""


class DataKey:
    """An unwrapped DEK, ready to use (the AES-GCM context is built once)."""

    __slots__ = ("aead",)

    def __init__(self, dek: bytes) -> None:
        if len(dek) != DEK_BYTES:
            raise KeyringError(f"a DEK has {DEK_BYTES} bytes, got {len(dek)}")
        self.aead = AESGCM(dek)


WrappedKey = tuple[str, bytes]
"""``(kek_id, wrapped_dek)`` as stored in ``conversation_keys``."""


class Keyring:
    """Creates and unwraps DEKs through a :class:`KeyProvider`, caching unwrapped ones."""

    def __init__(self, provider: KeyProvider, *, cache_size: int = 10_000) -> None:
        self.provider = provider
        self.cache_size = cache_size
        self._cache: OrderedDict[WrappedKey, DataKey] = OrderedDict()
        self.unwraps = 0  # provider.unwrap calls (cache misses), for tests and metrics

    async def _call(self, fn: Callable[..., T], *args: object) -> T:
        return await call_provider(self.provider, fn, *args)

    def _remember(self, key: WrappedKey, dek: DataKey) -> None:
        self._cache[key] = dek
        self._cache.move_to_end(key)
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)

    async def create(self) -> tuple[str, bytes, DataKey]:
        """A fresh DEK: ``(kek_id, wrapped, key)``."""
        dek = AESGCM.generate_key(bit_length=8 * DEK_BYTES)
        try:
            kek_id, wrapped = await self._call(self.provider.wrap, dek)
        except Exception as exc:
            raise KeyringError(f"wrapping a new DEK failed: {type(exc).__name__}: {exc}") from exc
        key = DataKey(dek)
        self._remember((kek_id, wrapped), key)
        return kek_id, wrapped, key

    async def unwrap(self, kek_id: str, wrapped: bytes) -> DataKey:
        cached = self._cache.get((kek_id, wrapped))
        if cached is not None:
            self._cache.move_to_end((kek_id, wrapped))
            return cached
        self.unwraps += 1
        try:
            dek = await self._call(self.provider.unwrap, kek_id, wrapped)
        except Exception as exc:
            raise KeyringError(f"unwrapping a DEK under {kek_id!r} failed: {type(exc).__name__}: {exc}") from exc
        key = DataKey(dek)
        self._remember((kek_id, wrapped), key)
        return key

    async def unwrap_many(self, keys: Iterable[WrappedKey]) -> dict[WrappedKey, DataKey]:
        """Unwrap each distinct wrapped DEK once; raises :class:`KeyringError` if any fails."""
        out: dict[WrappedKey, DataKey] = {}
        for k in keys:
            if k not in out:
                out[k] = await self.unwrap(*k)
        return out

    def forget_all(self) -> None:
        """Drop every cached DEK (tests; a node that wants to shed key material at once)."""
        self._cache.clear()
