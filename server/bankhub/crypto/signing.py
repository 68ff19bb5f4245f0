"""The hub's Ed25519 signing key: signing cards and notices, and verifying their signatures.

The private key is a 32-byte seed, created once for the whole cluster and stored only
wrapped by the :class:`~bankhub.crypto.keys.KeyProvider` (``signing_keys``, see
:mod:`bankhub.storage.signing_keys`), so every node signs with the same key and the
database alone cannot sign. What is signed is defined in :mod:`bankhub.protocol.cards`.
A signature travels as ``{"key_id": ..., "sig": <base64url, no padding, 64 bytes>}``; the
public keys are listed, JWK-style (``{"kty": "OKP", "crv": "Ed25519", "kid", "x"}``), at
``GET /v1/signing-keys``.
"""

from __future__ import annotations

import base64
import binascii
import secrets

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

__all__ = ["SEED_BYTES", "SigningKey", "b64url", "unb64url", "new_seed", "new_key_id", "public_jwk", "verify"]

SEED_BYTES = 32


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64url(text: str) -> bytes:
    """Decode unpadded base64url; raises ``ValueError`` on anything else."""
    if not isinstance(text, str) or "=" in text:
        raise ValueError("not unpadded base64url")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise ValueError("not base64url") from None


def new_seed() -> bytes:
    return secrets.token_bytes(SEED_BYTES)


def new_key_id() -> str:
    return f"sig-{secrets.token_hex(6)}"


class SigningKey:
    """An unwrapped signing key: its id, its public half and the means to sign."""

    __slots__ = ("key_id", "_private", "public_key")

    def __init__(self, key_id: str, seed: bytes) -> None:
        if len(seed) != SEED_BYTES:
            raise ValueError(f"an Ed25519 seed has {SEED_BYTES} bytes")
        self.key_id = key_id
        self._private = Ed25519PrivateKey.from_private_bytes(seed)
        self.public_key = self._private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)

    def sign(self, payload: bytes) -> dict[str, str]:
        """``{"key_id", "sig"}`` over ``payload``."""
        return {"key_id": self.key_id, "sig": b64url(self._private.sign(payload))}


def public_jwk(key_id: str, public_key: bytes) -> dict[str, str]:
    """The JWK (RFC 8037) of an Ed25519 public key."""
    return {"kty": "OKP", "crv": "Ed25519", "kid": key_id, "x": b64url(public_key), "alg": "EdDSA", "use": "sig"}


def verify(public_key: bytes, payload: bytes, sig: str) -> bool:
    """Does ``sig`` (unpadded base64url) verify over ``payload`` under ``public_key``? Never raises."""
    try:
        raw = unb64url(sig)
        if len(raw) != 64:
            return False
        Ed25519PublicKey.from_public_bytes(public_key).verify(raw, payload)
        return True
    except (InvalidSignature, ValueError):
        return False
