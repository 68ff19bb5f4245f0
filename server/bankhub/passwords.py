"""Password hashing with Argon2id (argon2-cffi), off the event loop.

Verification costs tens of milliseconds of CPU by design, so it runs in a thread. An
unknown username is verified against a dummy hash, so response time does not reveal
which usernames exist.
"""

from __future__ import annotations

import asyncio

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

__all__ = ["hash_password", "verify_password", "needs_rehash"]

_hasher = PasswordHasher()
_DUMMY = _hasher.hash("bankhub-dummy-password")


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def needs_rehash(stored: str) -> bool:
    return _hasher.check_needs_rehash(stored)


def _verify(stored: str | None, password: str) -> bool:
    try:
        return _hasher.verify(stored or _DUMMY, password) and stored is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


async def verify_password(stored: str | None, password: str) -> bool:
    """True iff ``password`` matches ``stored``; ``stored=None`` (no such user) is always False."""
    return await asyncio.to_thread(_verify, stored, password)
