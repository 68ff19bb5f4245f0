"""Sealing of broker payloads with the cluster key (AES-256-GCM).

Anything that crosses Redis must never be readable there: a payload is sealed on
publish and opened on receipt. The wire format is ``nonce (12 bytes) || ciphertext
|| tag (16 bytes)``. The channel name is bound in as associated data, so a sealed
payload replayed onto another channel fails to open instead of reaching the wrong
user's connections.

Nonces are random: with one key, stay well below 2**32 seals (NIST SP 800-38D) —
rotate the cluster key long before that.
"""

from __future__ import annotations

import base64
import binascii
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = ["Sealer", "SealError", "generate_key_b64"]

KEY_BYTES = 32
NONCE_BYTES = 12
TAG_BYTES = 16


class SealError(Exception):
    """A sealed payload could not be opened: tampered, truncated, wrong key or channel."""


class Sealer:
    """Seals and opens broker payloads with one 32-byte cluster key."""

    __slots__ = ("_aead",)

    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_BYTES:
            raise ValueError(f"cluster key must be {KEY_BYTES} bytes, got {len(key)}")
        self._aead = AESGCM(key)

    @classmethod
    def from_b64(cls, key_b64: str) -> Sealer:
        """Build a sealer from a base64 key (standard or URL-safe alphabet, padding optional)."""
        text = key_b64.strip().replace("-", "+").replace("_", "/")
        text += "=" * (-len(text) % 4)
        try:
            key = base64.b64decode(text, validate=True)
        except binascii.Error as exc:
            raise ValueError("cluster key is not valid base64") from exc
        return cls(key)

    def seal(self, channel: str, payload: bytes) -> bytes:
        """Encrypt ``payload`` for ``channel``: a fresh random nonce every call."""
        nonce = os.urandom(NONCE_BYTES)
        return nonce + self._aead.encrypt(nonce, payload, channel.encode())

    def open(self, channel: str, data: bytes) -> bytes:
        """Decrypt ``data`` sealed for ``channel``. Raises :class:`SealError` if it does not authenticate."""
        if len(data) < NONCE_BYTES + TAG_BYTES:
            raise SealError("sealed payload too short")
        try:
            return self._aead.decrypt(data[:NONCE_BYTES], data[NONCE_BYTES:], channel.encode())
        except InvalidTag:
            raise SealError("sealed payload failed authentication") from None


def generate_key_b64() -> str:
    """A new random cluster key, URL-safe base64 (fits in an environment variable)."""
    return base64.urlsafe_b64encode(os.urandom(KEY_BYTES)).decode("ascii")
