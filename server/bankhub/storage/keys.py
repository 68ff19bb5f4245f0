"""Storage for per-conversation data keys (``conversation_keys``).

A row holds a conversation's DEK wrapped under a KEK (``kek_id``, ``wrapped_dek``). It is
created inside the first append transaction that stores a message in the conversation
(:meth:`ConversationKeyStore.insert_new` then :meth:`~ConversationKeyStore.fetch`, under
the conversation's row lock). ``wrapped_dek`` NULL with ``shredded_at`` set means the
conversation was crypto-shredded. Readers JOIN this table themselves
(:mod:`bankhub.storage.messages`), so every read sees the current state.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any, NamedTuple

from ..crypto.keyring import DataKey, Keyring, KeyringError
from .db import Conn, Database, StorageUnavailable
from .dlp import forget_conversation_txn as forget_dlp_matches_txn
from .holds import ConversationHeld, holds_covering_conversation_txn, lock_holds_shared_txn

__all__ = ["ConversationKeyStore", "DataKeys", "KeyRow", "KeyUnavailable", "RewrapItem"]

log = logging.getLogger("bankhub.storage.keys")


class KeyUnavailable(StorageUnavailable):
    """A conversation key could not be unwrapped (key provider down or missing a KEK): retry later."""


class KeyRow(NamedTuple):
    kek_id: str | None
    wrapped: bytes | None  # None: shredded
    shredded: bool


class DataKeys(NamedTuple):
    """The outcome of :meth:`ConversationKeyStore.data_keys`, by conversation id."""

    keys: dict[str, DataKey]
    shredded: set[str]
    failed: set[str]  # the key provider could not create or unwrap the key (logged)


class RewrapItem(NamedTuple):
    conversation_id: uuid.UUID
    old_kek_id: str
    old_wrapped: bytes
    new_kek_id: str
    new_wrapped: bytes


def _count(status: str) -> int:
    """Rows affected, from a command status such as ``"UPDATE 12"``."""
    return int(status.rsplit(" ", 1)[-1])


class ConversationKeyStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    # --- inside the append transaction (the caller holds the conversations' row locks) --

    @staticmethod
    async def insert_new(conn: Conn, rows: Sequence[tuple[uuid.UUID, str, bytes]]) -> None:
        """Store freshly wrapped DEKs for conversations that have none (existing rows win)."""
        await conn.execute(
            """INSERT INTO conversation_keys (conversation_id, kek_id, wrapped_dek)
               SELECT * FROM unnest($1::uuid[], $2::text[], $3::bytea[])
               ON CONFLICT (conversation_id) DO NOTHING""",
            [r[0] for r in rows],
            [r[1] for r in rows],
            [r[2] for r in rows],
        )

    @staticmethod
    async def fetch(conn: Conn, conversation_ids: Sequence[uuid.UUID]) -> dict[str, KeyRow]:
        rows = await conn.fetch(
            """SELECT conversation_id, kek_id, wrapped_dek, shredded_at IS NOT NULL AS shredded
               FROM conversation_keys WHERE conversation_id = ANY($1::uuid[])""",
            list(conversation_ids),
        )
        return {str(r["conversation_id"]): KeyRow(r["kek_id"], r["wrapped_dek"], r["shredded"]) for r in rows}

    # --- the keys themselves: what a read or a write of sealed text needs --------------

    @staticmethod
    async def data_keys(
        conn: Conn, keyring: Keyring, conversation_ids: Sequence[str], known: Mapping[str, KeyRow] | None = None
    ) -> DataKeys:
        """The data keys of ``conversation_ids`` (canonical ids), unwrapped.

        ``known``: the key rows the caller read already (e.g. with its row locks); without
        it they are read here. A conversation without a key gets one (the provider wraps a
        new DEK; INSERT ... ON CONFLICT DO NOTHING, then read back: a row stored meanwhile
        wins). ``shredded``: conversations whose key was destroyed; ``failed``: those whose
        key the provider could not create or unwrap. Nothing raises for one conversation.
        """
        if known is None:
            known = await ConversationKeyStore.fetch(conn, [uuid.UUID(c) for c in conversation_ids])
        failed: set[str] = set()
        new: list[tuple[uuid.UUID, str, bytes]] = []
        for cid in conversation_ids:
            if cid in known:
                continue
            try:
                kek_id, wrapped, _ = await keyring.create()
            except KeyringError as exc:
                log.error("no data key for conversation %s: %s", cid, exc)
                failed.add(cid)
                continue
            new.append((uuid.UUID(cid), kek_id, wrapped))
        if new:
            await ConversationKeyStore.insert_new(conn, new)
            known = {**known, **await ConversationKeyStore.fetch(conn, [n[0] for n in new])}
        out = DataKeys({}, set(), failed)
        for cid in conversation_ids:
            row = known.get(cid)
            if cid in failed or row is None:
                failed.add(cid)
            elif row.shredded or row.kek_id is None or row.wrapped is None:
                out.shredded.add(cid)
            else:
                try:
                    out.keys[cid] = await keyring.unwrap(row.kek_id, row.wrapped)
                except KeyringError as exc:
                    log.error("data key of conversation %s unavailable: %s", cid, exc)
                    failed.add(cid)
        return out

    @staticmethod
    async def unwrap_rows(keyring: Keyring, rows: Iterable[Any], *, present: str) -> dict[tuple[str, bytes], DataKey]:
        """The keys that came with read rows (columns ``kek_id``, ``wrapped_dek``, from a JOIN
        of this table), unwrapped or from the keyring's cache, by ``(kek_id, wrapped_dek)``:
        only for rows whose column ``present`` is not NULL (those that hold something sealed).
        :class:`KeyUnavailable` if the provider fails: a read never hands out markers for
        texts that are fine."""
        try:
            return await keyring.unwrap_many(
                (r["kek_id"], r["wrapped_dek"]) for r in rows if r["wrapped_dek"] is not None and r[present] is not None
            )
        except KeyringError as exc:
            log.error("conversation key unavailable: %s", exc)
            raise KeyUnavailable(str(exc)) from exc

    # --- shredding ----------------------------------------------------------------------

    async def shred(
        self, conversation_id: str, *, in_transaction: Callable[[Conn], Awaitable[None]] | None = None
    ) -> str:
        """Destroy the conversation's wrapped DEK; returns ``"shredded"``, ``"already_shredded"`` or ``"not_found"``.

        Takes the conversation's row lock, as an append batch does: a send in flight either
        committed before (its message is shredded with the rest) or sees the shredded key.
        A conversation without messages yet gets a shredded row, so it can never get a key.
        The service desk's notes and CSAT comments are sealed under the same key and go
        with it (any still in plaintext from before they were sealed are cleared here), and so
        do the conversation's data-loss prevention fingerprints (``dlp_matches``).
        ``in_transaction`` (e.g. writing the audit record) runs in the same transaction,
        after the key is destroyed.

        Refuses a conversation an active legal hold covers (:class:`~bankhub.storage.holds.ConversationHeld`,
        naming the holds; nothing changes). The holds lock is taken shared first, so a hold
        placed meanwhile either committed before this check or waits for this shred to end.
        """
        cid = uuid.UUID(conversation_id)
        async with self.db.transaction("shred_conversation_key") as conn:
            await lock_holds_shared_txn(conn)
            if await conn.fetchval("SELECT 1 FROM conversations WHERE id = $1 FOR UPDATE", cid) is None:
                return "not_found"
            if await conn.fetchval("SELECT shredded_at IS NOT NULL FROM conversation_keys WHERE conversation_id = $1", cid):
                return "already_shredded"
            held = await holds_covering_conversation_txn(conn, cid)
            if held:
                raise ConversationHeld(str(cid), held)
            await conn.execute(
                """INSERT INTO conversation_keys (conversation_id, kek_id, wrapped_dek, shredded_at)
                   VALUES ($1, NULL, NULL, now())
                   ON CONFLICT (conversation_id) DO UPDATE SET wrapped_dek = NULL, shredded_at = now()""",
                cid,
            )
            # service-desk texts still in plaintext from before they were sealed (delta 0010;
            # sealed at the next start-up) go with the key; the sealed ones need nothing
            await conn.execute(
                """UPDATE service_notes SET text = NULL
                   WHERE text IS NOT NULL AND session_id IN (SELECT id FROM service_sessions WHERE conversation_id = $1)""",
                cid,
            )
            await conn.execute(
                "UPDATE service_sessions SET csat_comment = NULL WHERE conversation_id = $1 AND csat_comment IS NOT NULL", cid
            )
            # data-loss prevention's fingerprints would still tie a card number to this conversation
            # and its senders after the erasure: they go with the key
            await forget_dlp_matches_txn(conn, cid)
            if in_transaction is not None:
                await in_transaction(conn)
        return "shredded"

    # --- rotation -----------------------------------------------------------------------

    async def not_under(self, kek_id: str, after: uuid.UUID | None, limit: int) -> list[tuple[uuid.UUID, str, bytes]]:
        """Up to ``limit`` live DEKs wrapped under another KEK than ``kek_id``, by conversation id after ``after``."""
        async with self.db.connection("conversation_keys_to_rewrap") as conn:
            rows = await conn.fetch(
                """SELECT conversation_id, kek_id, wrapped_dek FROM conversation_keys
                   WHERE wrapped_dek IS NOT NULL AND kek_id <> $1 AND conversation_id > $2
                   ORDER BY conversation_id LIMIT $3""",
                kek_id,
                after or uuid.UUID(int=0),
                limit,
            )
        return [(r["conversation_id"], r["kek_id"], r["wrapped_dek"]) for r in rows]

    async def rewrap(self, items: Sequence[RewrapItem]) -> int:
        """Replace wrapped DEKs in one transaction; returns how many rows changed.

        A row changes only if it still holds exactly the old wrapped bytes: a DEK shredded
        (or re-wrapped by someone else) since it was read is left alone — rotation never
        brings a shredded key back.
        """
        if not items:
            return 0
        async with self.db.transaction("rewrap_conversation_keys") as conn:
            status = await conn.execute(
                """UPDATE conversation_keys k SET kek_id = v.new_kek, wrapped_dek = v.new_wrapped
                   FROM unnest($1::uuid[], $2::text[], $3::bytea[], $4::text[], $5::bytea[])
                        AS v(id, old_kek, old_wrapped, new_kek, new_wrapped)
                   WHERE k.conversation_id = v.id AND k.kek_id = v.old_kek AND k.wrapped_dek = v.old_wrapped""",
                [i.conversation_id for i in items],
                [i.old_kek_id for i in items],
                [i.old_wrapped for i in items],
                [i.new_kek_id for i in items],
                [i.new_wrapped for i in items],
            )
        return _count(status)

    async def counts(self) -> tuple[dict[str, int], int]:
        """``({kek_id: live DEKs wrapped under it}, shredded conversations)``."""
        async with self.db.connection("conversation_key_counts") as conn:
            rows = await conn.fetch(
                """SELECT kek_id, count(*) AS n FROM conversation_keys WHERE wrapped_dek IS NOT NULL GROUP BY kek_id"""
            )
            shredded = await conn.fetchval("SELECT count(*) FROM conversation_keys WHERE wrapped_dek IS NULL")
        return {r["kek_id"]: r["n"] for r in rows}, int(shredded)
