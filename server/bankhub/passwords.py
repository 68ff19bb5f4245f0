"""Password hashing with Argon2id (argon2-cffi), off the event loop.

Verification costs tens of milliseconds of CPU by design, so it runs in a thread. Every
sign-in attempt costs exactly one Argon2 verification: an unknown username is verified
against a dummy hash made by the same hasher (so with the same parameters as real hashes),
so response time does not reveal which usernames exist.
"""

from __future__ import annotations

import asyncio

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

__all__ = ["hash_password", "verify_password", "needs_rehash"]

_hasher = PasswordHasher()
# stands in for the stored hash of a username that does not exist; its parameters are the
# hasher's, so verifying against it costs what verifying a real password costs
_DUMMY = _hasher.hash("bankhub-dummy-password")


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def needs_rehash(stored: str) -> bool:
    return _hasher.check_needs_rehash(stored)


def _argon2_verify(encoded: str, password: str) -> bool:
    """The one place an Argon2 verification runs (tests count calls here)."""
    try:
        return _hasher.verify(encoded, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def _verify(stored: str | None, password: str) -> bool:
    if stored is None:
        _argon2_verify(_DUMMY, password)  # the same work as for a real account; the result is moot
        return False
    return _argon2_verify(stored, password)


async def verify_password(stored: str | None, password: str) -> bool:
    """True iff ``password`` matches ``stored``; ``stored=None`` (no such user) is always False,
    after the same Argon2 work as a real verification."""
    return await asyncio.to_thread(_verify, stored, password)
