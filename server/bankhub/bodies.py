"""How message bodies are stored: the seam where encryption at rest plugs in.

A :class:`BodyCodec` turns a body's JSON bytes into what the ``messages.body`` column
holds and back. The associated data (conversation id, message id, seq) is passed so an
encrypting codec can bind a ciphertext to its row. :class:`PlainBodyCodec` stores the
JSON as-is and marks no key id.
"""

from __future__ import annotations

from typing import Protocol

__all__ = ["BodyCodec", "PlainBodyCodec"]


class BodyCodec(Protocol):
    def seal(self, conversation_id: str, message_id: str, seq: int, body: bytes) -> tuple[bytes, str | None]:
        """Return ``(stored_bytes, key_id)``; ``key_id`` is None for unencrypted storage."""
        ...

    def open(self, conversation_id: str, message_id: str, seq: int, stored: bytes, key_id: str | None) -> bytes:
        """Return the body's JSON bytes."""
        ...


class PlainBodyCodec:
    def seal(self, conversation_id: str, message_id: str, seq: int, body: bytes) -> tuple[bytes, str | None]:
        return body, None

    def open(self, conversation_id: str, message_id: str, seq: int, stored: bytes, key_id: str | None) -> bytes:
        if key_id is not None:
            raise ValueError(f"message {message_id} is encrypted under key {key_id!r} but no key provider is configured")
        return stored
