"""How an alert's text is stored: AES-256-GCM under its recipient's data key. Pure code.

The rendered title and body are encoded as the JSON array ``[title, body]`` and sealed
under the recipient's alert data key (a DEK from :class:`~bankhub.crypto.Keyring`,
wrapped by the KEK in ``alert_keys``): ``nonce (12 bytes) || ciphertext+tag``. The
associated data binds the ciphertext to its alert and recipient, so bytes copied to
another row do not open there (:class:`ContentUnreadable`).
"""

from __future__ import annotations

import os
import uuid

import msgspec
from cryptography.exceptions import InvalidTag

from ..crypto.keyring import DataKey

__all__ = ["CONTENT_KEY_ID", "ContentUnreadable", "associated_data", "seal", "open_content"]

CONTENT_KEY_ID = "adek1"
"""``alerts.content_key_id`` of content sealed here; a later scheme gets a new id."""

_NONCE = 12
_AD_PREFIX = b"bankhub/alert/v1\x00"
_decoder = msgspec.json.Decoder(tuple[str, str])


class ContentUnreadable(Exception):
    """The stored bytes do not open under this key and row: damaged, moved, or not ours."""


def associated_data(alert_id: str, user_id: str) -> bytes:
    return _AD_PREFIX + uuid.UUID(alert_id).bytes + uuid.UUID(user_id).bytes


def seal(key: DataKey, alert_id: str, user_id: str, title: str, body: str) -> bytes:
    nonce = os.urandom(_NONCE)
    return nonce + key.aead.encrypt(nonce, msgspec.json.encode((title, body)), associated_data(alert_id, user_id))


def open_content(key: DataKey, alert_id: str, user_id: str, stored: bytes, key_id: str) -> tuple[str, str]:
    """``(title, body)``; raises :class:`ContentUnreadable`."""
    if key_id != CONTENT_KEY_ID or len(stored) < _NONCE + 16:
        raise ContentUnreadable(f"unknown content key id {key_id!r} or short content")
    try:
        plain = key.aead.decrypt(stored[:_NONCE], stored[_NONCE:], associated_data(alert_id, user_id))
    except InvalidTag:
        raise ContentUnreadable("authentication failed") from None
    title, body = _decoder.decode(plain)
    return title, body
