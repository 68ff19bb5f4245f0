"""Storage of the hub's signing keys (``signing_keys``) and the node's copy of the active one.

One Ed25519 key is active for the whole cluster. The first node that needs it creates it
(a random seed, wrapped by the key provider; a unique index lets only one of several
nodes racing win, the others read the winner's row). Each node unwraps the active key
once and re-reads which key is active every :data:`REFRESH_SECONDS`, so a rotation
(:meth:`SigningKeyStore.rotate`, ``bankhub keys rotate-signing``) reaches every node
without a restart. Retired keys stay in the table and in :meth:`public_keys`, so what they
signed still verifies.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, NamedTuple

import msgspec

from ..crypto.keyring import Keyring, call_provider
from ..crypto.signing import SigningKey, new_key_id, new_seed
from ..protocol.cards import card_payload, notice_payload
from ..protocol.frames import NoticeBody, Signature, SignedCardBody
from .db import Conn, Database, StorageUnavailable

__all__ = ["SigningKeyStore", "PublicKey", "SigningUnavailable", "REFRESH_SECONDS"]

log = logging.getLogger("bankhub.storage.signing_keys")

REFRESH_SECONDS = 60.0


class SigningUnavailable(StorageUnavailable):
    """The signing key could not be read, created or unwrapped: nothing was signed, retry later."""


class PublicKey(NamedTuple):
    key_id: str
    public_key: bytes
    state: str  # active | retired
    created_at_ms: int


class SigningKeyStore:
    def __init__(self, db: Database, keyring: Keyring) -> None:
        self.db = db
        self.keyring = keyring
        self._active: SigningKey | None = None
        self._checked = 0.0
        self._lock = asyncio.Lock()

    @property
    def current(self) -> SigningKey:
        """The active key as last loaded (``ready`` first); raises if none is loaded yet."""
        if self._active is None:
            raise SigningUnavailable("the signing key is not loaded")
        return self._active

    def sign_card_body(self, conversation_id: str, message_id: str, sender_id: str, ts: int, body: bytes) -> bytes:
        """The card ``body`` (JSON) with the active key's signature over it and its place
        (:func:`bankhub.protocol.cards.card_payload`), as it is stored and delivered."""
        key = self.current
        card = msgspec.json.decode(body, type=SignedCardBody)
        payload = card_payload(key.key_id, conversation_id, message_id, sender_id, ts, msgspec.to_builtins(card))
        signed = msgspec.structs.replace(card, signature=Signature(**key.sign(payload)))
        return msgspec.json.encode(signed)

    def sign_notice(self, account_id: str, notice_id: str, body: NoticeBody) -> Signature:
        """The active key's signature of a notice (:func:`bankhub.protocol.cards.notice_payload`)."""
        key = self.current
        return Signature(**key.sign(notice_payload(key.key_id, account_id, notice_id, msgspec.to_builtins(body))))

    async def ready(self) -> SigningKey:
        """The active key, loading (or creating) it when not loaded or due for a re-check."""
        if self._active is not None and time.monotonic() - self._checked < REFRESH_SECONDS:
            return self._active
        async with self._lock:
            if self._active is not None and time.monotonic() - self._checked < REFRESH_SECONDS:
                return self._active
            try:
                row = await self._active_row()
                if row is None:
                    await self._create()
                    row = await self._active_row()
                if row is None:  # pragma: no cover - the insert above or a racing node made one
                    raise SigningUnavailable("no active signing key")
                if self._active is None or self._active.key_id != row["id"]:
                    provider = self.keyring.provider
                    seed = await call_provider(provider, provider.unwrap, row["kek_id"], bytes(row["wrapped_private"]))
                    key = SigningKey(row["id"], seed)
                    if key.public_key != bytes(row["public_key"]):
                        # a wrapped seed copied from another row, or another provider's: never sign with it
                        raise SigningUnavailable("the signing key's private half does not match its public key")
                    self._active = key
            except SigningUnavailable:
                raise
            except Exception as exc:
                log.warning("signing key unavailable: %s", type(exc).__name__)
                raise SigningUnavailable("the signing key could not be loaded") from exc
            self._checked = time.monotonic()
            return self._active

    async def _active_row(self) -> Any:
        async with self.db.connection("signing_key_active") as conn:
            return await conn.fetchrow(
                "SELECT id, public_key, kek_id, wrapped_private FROM signing_keys WHERE state = 'active'"
            )

    async def _new_row(self) -> tuple[str, bytes, str, bytes]:
        seed = new_seed()
        key_id = new_key_id()
        kek_id, wrapped = await call_provider(self.keyring.provider, self.keyring.provider.wrap, seed)
        return key_id, SigningKey(key_id, seed).public_key, kek_id, wrapped

    async def _create(self) -> None:
        key_id, public, kek_id, wrapped = await self._new_row()
        async with self.db.connection("signing_key_create") as conn:
            # a racing node may have created one: the unique index keeps the first
            await conn.execute(
                """INSERT INTO signing_keys (id, public_key, kek_id, wrapped_private, state)
                   VALUES ($1, $2, $3, $4, 'active') ON CONFLICT DO NOTHING""",
                key_id, public, kek_id, wrapped,
            )

    async def rotate(self) -> str:
        """Make a new key active and retire the current one (kept for verification). Returns the new id."""
        key_id, public, kek_id, wrapped = await self._new_row()
        async with self.db.transaction("signing_key_rotate") as conn:
            await self._rotate_txn(conn, key_id, public, kek_id, wrapped)
        self.recheck()
        return key_id

    def recheck(self) -> None:
        """Re-read which key is active at the next :meth:`ready` (not within :data:`REFRESH_SECONDS`)."""
        self._checked = 0.0

    @staticmethod
    async def _rotate_txn(conn: Conn, key_id: str, public: bytes, kek_id: str, wrapped: bytes) -> None:
        await conn.execute("LOCK TABLE signing_keys IN SHARE ROW EXCLUSIVE MODE")
        await conn.execute("UPDATE signing_keys SET state = 'retired', retired_at = now() WHERE state = 'active'")
        await conn.execute(
            "INSERT INTO signing_keys (id, public_key, kek_id, wrapped_private, state) VALUES ($1, $2, $3, $4, 'active')",
            key_id, public, kek_id, wrapped,
        )

    async def public_keys(self, limit: int = 100) -> list[PublicKey]:
        """Every signing key's public half, the active one first, then the newest retired ones."""
        async with self.db.connection("signing_keys_public") as conn:
            rows = await conn.fetch(
                """SELECT id, public_key, state, created_at FROM signing_keys
                   ORDER BY state = 'active' DESC, created_at DESC LIMIT $1""",
                limit,
            )
        return [
            PublicKey(r["id"], bytes(r["public_key"]), r["state"], int(r["created_at"].timestamp() * 1000)) for r in rows
        ]
