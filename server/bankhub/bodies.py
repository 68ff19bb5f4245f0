"""How message bodies are stored: AES-256-GCM under the conversation's data key.

A :class:`BodyCodec` turns a body's JSON bytes into what the ``messages.body`` column holds
and back, given the conversation's unwrapped data key (:class:`~bankhub.crypto.DataKey`,
see :mod:`bankhub.crypto.keyring`). :class:`AesGcmBodyCodec`, the only codec the hub
uses, stores ``nonce (12 bytes) || ciphertext+tag`` and writes :data:`BODY_KEY_ID` to
``messages.body_key_id``.

The associated data binds a ciphertext to its row — conversation id, message id and seq
— so bytes copied to another row (another conversation, another message, another seq)
fail authentication there instead of showing one message in another's place. A failure
is :class:`BodyUnreadable`; the store turns it into an ``undecryptable`` body marker.

Nonces are random (96 bits) per message. Under one DEK that is safe far beyond any
conversation's length (NIST's limit for random GCM nonces is 2^32 messages per key).
"""

from __future__ import annotations

import os
import uuid
from typing import Protocol

from cryptography.exceptions import InvalidTag

from .crypto.keyring import DataKey

__all__ = ["BodyCodec", "AesGcmBodyCodec", "BodyUnreadable", "BODY_KEY_ID", "associated_data"]

BODY_KEY_ID = "cdek1"
"""``messages.body_key_id`` of a body sealed by :class:`AesGcmBodyCodec`: AES-256-GCM under
the conversation's DEK (row ``conversation_keys``), associated data from
:func:`associated_data`. A later scheme, or a per-conversation re-key, gets a new id."""

NONCE_BYTES = 12
_AD_PREFIX = b"bankhub/body/v1\x00"


class BodyUnreadable(Exception):
    """The stored bytes do not open under this key and row: tampered, moved, or not ours."""


def _uuid_bytes(value: str) -> bytes:
    # the canonical form (every id the hub stores or makes) without building a UUID object;
    # anything else as uuid.UUID reads it
    if len(value) == 36 and value.count("-") == 4 and value[8] == value[13] == value[18] == value[23] == "-":
        try:
            raw = bytes.fromhex(value.replace("-", ""))
        except ValueError:
            raw = b""
        if len(raw) == 16:  # 32 hex digits exactly (whitespace, which fromhex skips, makes it shorter)
            return raw
    return uuid.UUID(value).bytes


def associated_data(conversation_id: str, message_id: str, seq: int) -> bytes:
    """Fixed-width encoding of the row a body belongs to (no two rows share it)."""
    return _AD_PREFIX + _uuid_bytes(conversation_id) + _uuid_bytes(message_id) + seq.to_bytes(8, "big", signed=True)


class BodyCodec(Protocol):
    def seal(self, key: DataKey, conversation_id: str, message_id: str, seq: int, body: bytes) -> tuple[bytes, str]:
        """Return ``(stored_bytes, body_key_id)`` for the body's JSON bytes."""
        ...

    def open(
        self, key: DataKey, conversation_id: str, message_id: str, seq: int, stored: bytes, key_id: str | None
    ) -> bytes:
        """Return the body's JSON bytes; raise :class:`BodyUnreadable` if they can't be had."""
        ...


class AesGcmBodyCodec:
    def seal(self, key: DataKey, conversation_id: str, message_id: str, seq: int, body: bytes) -> tuple[bytes, str]:
        nonce = os.urandom(NONCE_BYTES)
        return nonce + key.aead.encrypt(nonce, body, associated_data(conversation_id, message_id, seq)), BODY_KEY_ID

    def open(
        self, key: DataKey, conversation_id: str, message_id: str, seq: int, stored: bytes, key_id: str | None
    ) -> bytes:
        if key_id != BODY_KEY_ID:
            # includes NULL: a plaintext row is never accepted as a message body
            raise BodyUnreadable(f"unknown body key id {key_id!r}")
        if len(stored) < NONCE_BYTES + 16:
            raise BodyUnreadable("stored body too short")
        try:
            return key.aead.decrypt(stored[:NONCE_BYTES], stored[NONCE_BYTES:], associated_data(conversation_id, message_id, seq))
        except InvalidTag:
            raise BodyUnreadable("authentication failed") from None
