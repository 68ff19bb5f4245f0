"""Encryption at rest: KEK providers (:mod:`.keys`) and per-conversation DEKs (:mod:`.keyring`).

Message bodies are sealed by :class:`bankhub.bodies.AesGcmBodyCodec` under their
conversation's DEK; see ``docs/architecture.md`` ("Encryption at rest").
"""

from .keyring import DataKey, Keyring, KeyringError
from .keys import KeyFileError, KeyProvider, LocalKeyFile, UnknownKek, provider_from_settings

__all__ = [
    "DataKey",
    "Keyring",
    "KeyringError",
    "KeyFileError",
    "KeyProvider",
    "LocalKeyFile",
    "UnknownKek",
    "provider_from_settings",
]
