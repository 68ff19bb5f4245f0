"""How the service desk's free text is stored: AES-256-GCM under the conversation's data key. Pure code.

Agents' notes (``service_notes.text``: transfer and close notes) and customers' CSAT
comments (``service_sessions.csat_comment``) are what people type, so they hold what
people type — card numbers included. They are sealed exactly like message bodies
(:mod:`bankhub.bodies`): under the data key of the session's conversation
(``conversation_keys``), as ``nonce (12 bytes) || ciphertext+tag``, with
:data:`DESK_TEXT_KEY_ID` in the row's ``*_key_id`` column. Crypto-shredding the
conversation therefore makes them unrecoverable together with its messages.

The associated data binds a ciphertext to its column, its conversation and its row (the
note's id, or the session's id for a comment): bytes copied to another row or column fail
authentication there (:class:`TextUnreadable`) instead of showing one text in another's
place.
"""

from __future__ import annotations

import os
import uuid
from typing import Final

from cryptography.exceptions import InvalidTag

from ..crypto.keyring import DataKey

__all__ = [
    "DESK_TEXT_KEY_ID",
    "NOTE_TEXT",
    "CSAT_COMMENT",
    "SHREDDED",
    "UNDECRYPTABLE",
    "TextUnreadable",
    "associated_data",
    "seal_text",
    "open_text",
]

DESK_TEXT_KEY_ID: Final = "cdek1-desk"
"""``service_notes.text_key_id`` / ``service_sessions.csat_comment_key_id`` of a text sealed
here: AES-256-GCM under the conversation's DEK, associated data from :func:`associated_data`.
A later scheme gets a new id."""

NOTE_TEXT: Final = "service_notes.text"
CSAT_COMMENT: Final = "service_sessions.csat_comment"
_FIELDS = frozenset({NOTE_TEXT, CSAT_COMMENT})

SHREDDED: Final = "shredded"
"""Why a text reads as absent: the conversation was erased (crypto-shredded)."""
UNDECRYPTABLE: Final = "undecryptable"
"""Why a text reads as absent: the stored bytes failed their integrity check (moved, tampered)."""

_NONCE = 12
_TAG = 16
_AD_PREFIX = b"bankhub/desk-text/v1\x00"


class TextUnreadable(Exception):
    """The stored bytes do not open under this key and row: tampered, moved, or not ours."""


def associated_data(field: str, conversation_id: str, row_id: str) -> bytes:
    """The column, conversation and row a text belongs to (fixed-width ids: no two rows share it)."""
    if field not in _FIELDS:
        raise ValueError(f"not a sealed desk column: {field!r}")
    return _AD_PREFIX + field.encode() + b"\x00" + uuid.UUID(conversation_id).bytes + uuid.UUID(row_id).bytes


def seal_text(key: DataKey, field: str, conversation_id: str, row_id: str, text: str) -> bytes:
    """The bytes to store for ``text`` in ``field`` of row ``row_id`` (a fresh random nonce each time)."""
    nonce = os.urandom(_NONCE)
    return nonce + key.aead.encrypt(nonce, text.encode(), associated_data(field, conversation_id, row_id))


def open_text(key: DataKey, field: str, conversation_id: str, row_id: str, stored: bytes, key_id: str | None) -> str:
    """The text sealed by :func:`seal_text` for exactly this row; raises :class:`TextUnreadable`."""
    if key_id != DESK_TEXT_KEY_ID:
        raise TextUnreadable(f"unknown desk text key id {key_id!r}")
    if len(stored) < _NONCE + _TAG:
        raise TextUnreadable("stored text too short")
    try:
        plain = key.aead.decrypt(stored[:_NONCE], stored[_NONCE:], associated_data(field, conversation_id, row_id))
    except InvalidTag:
        raise TextUnreadable("authentication failed") from None
    try:
        return plain.decode()
    except UnicodeDecodeError:
        raise TextUnreadable("not UTF-8 text") from None
