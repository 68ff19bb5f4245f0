"""Media at rest: each stored variant sealed with AES-256-GCM under the conversation's data key.

The same data key (DEK) as the conversation's message bodies (:mod:`bankhub.bodies`,
``conversation_keys``), so crypto-shredding the conversation — destroying its wrapped DEK —
makes its pictures and voice notes unreadable too, on every node and in every copy of the
blob store, with nothing to delete.

A blob is ``nonce (12 bytes) || ciphertext+tag``. The associated data binds it to its place:
conversation id, media id and variant name, so a blob copied under another media item or
variant (or swapped between a thumbnail and a full picture) fails authentication instead of
being served in the other's place (:class:`MediaUnreadable`).
"""

from __future__ import annotations

import os
import uuid

from cryptography.exceptions import InvalidTag

from ..crypto.keyring import DataKey

__all__ = ["seal", "open_sealed", "associated_data", "MediaUnreadable", "MEDIA_KEY_ID"]

MEDIA_KEY_ID = "cdek1"
"""Stored with each media row: AES-256-GCM under the conversation's DEK, :func:`associated_data`."""

NONCE_BYTES = 12
_AD_PREFIX = b"bankhub/media/v1\x00"


class MediaUnreadable(Exception):
    """The stored bytes do not open under this key and place: tampered, moved, or not ours."""


def associated_data(conversation_id: str, media_id: str, variant: str) -> bytes:
    """Fixed-width ids, then the variant name: no two places share it."""
    return _AD_PREFIX + uuid.UUID(conversation_id).bytes + uuid.UUID(media_id).bytes + variant.encode("ascii")


def seal(key: DataKey, conversation_id: str, media_id: str, variant: str, data: bytes) -> bytes:
    nonce = os.urandom(NONCE_BYTES)
    return nonce + key.aead.encrypt(nonce, data, associated_data(conversation_id, media_id, variant))


def open_sealed(key: DataKey, conversation_id: str, media_id: str, variant: str, stored: bytes) -> bytes:
    if len(stored) < NONCE_BYTES + 16:
        raise MediaUnreadable("stored media too short")
    try:
        return key.aead.decrypt(stored[:NONCE_BYTES], stored[NONCE_BYTES:], associated_data(conversation_id, media_id, variant))
    except InvalidTag:
        raise MediaUnreadable("authentication failed") from None
