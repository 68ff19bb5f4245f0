"""Storage of data-loss prevention: the compliance HMAC key (``dlp_keys``), the fingerprints of
masked values (``dlp_matches``) and the counts of refused sends (``dlp_refusals``). Delta 0020.

The key is 32 random bytes, stored only wrapped by the key provider, like the hub's signing key
(:mod:`bankhub.storage.signing_keys`): the first node that needs it creates it (a unique index
lets one of several racing nodes win), each node unwraps it once. A fingerprint row names the
key it was made under, so a search tries every key (one, until a rotation — which no command
does yet; ``bankhub keys rotate`` re-wraps the key under a new KEK like every other wrapped
secret, :mod:`bankhub.storage.wrapped_secrets`).

Writes are ``*_txn`` steps of the send transaction (:func:`bankhub.actions.messages.commit`
and the other text paths): a masked value's fingerprint commits with its message or not at all.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import secrets
import uuid
from collections.abc import Sequence
from typing import Any, NamedTuple

from ..crypto.keyring import Keyring, call_provider
from .db import Conn, Database, StorageUnavailable

__all__ = [
    "DlpKeyStore",
    "DlpKey",
    "DlpUnavailable",
    "MatchRow",
    "NewMatch",
    "insert_matches_txn",
    "count_refusals_txn",
    "forget_conversation_txn",
    "member_sides_txn",
    "search",
    "figures",
]

log = logging.getLogger("bankhub.storage.dlp")


class DlpUnavailable(StorageUnavailable):
    """The compliance key could not be read, created or unwrapped: nothing masked was stored."""


class DlpKey(NamedTuple):
    key_id: str
    secret: bytes

    def __repr__(self) -> str:  # never the secret, even in a traceback or a log line
        return f"DlpKey(key_id={self.key_id!r}, secret=<{len(self.secret)} bytes>)"


class NewMatch(NamedTuple):
    """One masked value of a stored message (``hmac`` None for a CVV or a code)."""

    message_id: str
    conversation_id: str
    kind: str
    key_id: str | None
    hmac: bytes | None


class MatchRow(NamedTuple):
    """A search hit: metadata only."""

    conversation_id: str
    message_id: str
    seq: int
    sender_id: str
    created_at: dt.datetime


class DlpKeyStore:
    """The compliance HMAC keys: the active one (created on first use) and every one's secret."""

    def __init__(self, db: Database, keyring: Keyring) -> None:
        self.db = db
        self.keyring = keyring
        self._active: DlpKey | None = None
        self._all: dict[str, bytes] = {}
        self._lock = asyncio.Lock()

    async def active(self) -> DlpKey:
        """The active key (loaded once per node; created when there is none)."""
        if self._active is not None:
            return self._active
        async with self._lock:
            if self._active is None:
                try:
                    row = await self._active_row()
                    if row is None:
                        await self._create()
                        row = await self._active_row()
                    if row is None:  # pragma: no cover - the insert above or a racing node made one
                        raise DlpUnavailable("no active compliance key")
                    self._active = DlpKey(row["id"], await self._unwrap(row))
                except DlpUnavailable:
                    raise
                except Exception as exc:
                    log.warning("compliance key unavailable: %s", type(exc).__name__)
                    raise DlpUnavailable("the compliance key could not be loaded") from exc
                self._all[self._active.key_id] = self._active.secret
            return self._active

    async def every(self) -> list[DlpKey]:
        """Every key (active and retired): a search matches fingerprints made under any of them."""
        await self.active()
        async with self.db.connection("dlp_keys_all") as conn:
            rows = await conn.fetch("SELECT id, kek_id, wrapped_key FROM dlp_keys ORDER BY created_at")
        out = []
        for r in rows:
            if r["id"] not in self._all:
                try:
                    self._all[r["id"]] = await self._unwrap(r)
                except Exception as exc:
                    log.warning("compliance key %s unavailable: %s", r["id"], type(exc).__name__)
                    raise DlpUnavailable("a compliance key could not be unwrapped") from exc
            out.append(DlpKey(r["id"], self._all[r["id"]]))
        return out

    async def _unwrap(self, row: Any) -> bytes:
        provider = self.keyring.provider
        secret: bytes = await call_provider(provider, provider.unwrap, row["kek_id"], bytes(row["wrapped_key"]))
        if len(secret) != 32:
            raise DlpUnavailable("the compliance key is not 32 bytes")
        return secret

    async def _active_row(self) -> Any:
        async with self.db.connection("dlp_key_active") as conn:
            return await conn.fetchrow("SELECT id, kek_id, wrapped_key FROM dlp_keys WHERE state = 'active'")

    async def _create(self) -> None:
        secret = secrets.token_bytes(32)
        kek_id, wrapped = await call_provider(self.keyring.provider, self.keyring.provider.wrap, secret)
        async with self.db.connection("dlp_key_create") as conn:
            # a racing node may have created one: the unique index keeps the first
            await conn.execute(
                "INSERT INTO dlp_keys (id, kek_id, wrapped_key, state) VALUES ($1, $2, $3, 'active') ON CONFLICT DO NOTHING",
                f"dlp-{uuid.uuid4().hex[:16]}", kek_id, wrapped,
            )


async def insert_matches_txn(conn: Conn, matches: Sequence[NewMatch]) -> None:
    """Write the fingerprints of a transaction's masked values (one round trip)."""
    if not matches:
        return
    await conn.execute(
        """INSERT INTO dlp_matches (message_id, conversation_id, kind, key_id, hmac, created_at)
           SELECT m.message_id, m.conversation_id, m.kind, m.key_id, m.hmac, now()
           FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::bytea[])
                AS m(message_id, conversation_id, kind, key_id, hmac)""",
        [uuid.UUID(m.message_id) for m in matches],
        [uuid.UUID(m.conversation_id) for m in matches],
        [m.kind for m in matches],
        [m.key_id for m in matches],
        [m.hmac for m in matches],
    )


async def forget_conversation_txn(conn: Conn, conversation_id: uuid.UUID) -> int:
    """Delete a conversation's fingerprints (a crypto-shred or an erasure: nothing may link a card
    number to the conversation or its senders once its messages are unreadable); how many went."""
    status = await conn.execute("DELETE FROM dlp_matches WHERE conversation_id = $1", conversation_id)
    return int(status.split()[-1]) if isinstance(status, str) and status.startswith("DELETE") else 0


async def member_sides_txn(conn: Conn, conversation_id: uuid.UUID, but: str) -> list[tuple[str, bool]]:
    """The (role, widget visitor) of each current member of a conversation but ``but`` (the
    readers of a text shown to the members, such as a group's title)."""
    rows = await conn.fetch(
        """SELECT u.role, u.widget_visitor FROM conversation_members m JOIN users u ON u.id = m.user_id
           WHERE m.conversation_id = $1 AND m.user_id <> $2""",
        conversation_id, uuid.UUID(but),
    )
    return [(r["role"], bool(r["widget_visitor"])) for r in rows]


async def count_refusals_txn(conn: Conn, counts: dict[tuple[str, str], int]) -> None:
    """Add ``{(kind, direction): refused}`` to today's refusal figures (rows in key order: two
    batches never wait on each other's rows in opposite orders)."""
    if not counts:
        return
    keys = sorted(counts)
    await conn.execute(
        """INSERT INTO dlp_refusals AS r (day, kind, direction, refused)
           SELECT current_date, k, d, n FROM unnest($1::text[], $2::text[], $3::bigint[]) AS v(k, d, n)
           ON CONFLICT (day, kind, direction) DO UPDATE SET refused = r.refused + excluded.refused""",
        [k for k, _ in keys],
        [d for _, d in keys],
        [counts[k] for k in keys],
    )


async def search(
    db: Database, kind: str, hmacs: Sequence[bytes], after: tuple[dt.datetime, uuid.UUID] | None, limit: int
) -> list[MatchRow]:
    """The messages whose masked values of ``kind`` have one of ``hmacs`` (one per compliance
    key), newest first, after the cursor ``(created_at, message_id)``; one row per message."""
    after_at, after_id = after if after is not None else (None, None)
    async with db.connection("dlp_search") as conn:
        rows = await conn.fetch(
            """SELECT DISTINCT ON (d.created_at, d.message_id)
                      d.conversation_id, d.message_id, m.seq, m.sender_id, d.created_at
               FROM dlp_matches d JOIN messages m ON m.conversation_id = d.conversation_id AND m.id = d.message_id
               WHERE d.kind = $1 AND d.hmac = ANY($2::bytea[])
                 AND ($3::timestamptz IS NULL OR (d.created_at, d.message_id) < ($3, $4::uuid))
               ORDER BY d.created_at DESC, d.message_id DESC LIMIT $5""",
            kind, list(hmacs), after_at, after_id, limit,
        )
    return [MatchRow(str(r["conversation_id"]), str(r["message_id"]), r["seq"], str(r["sender_id"]), r["created_at"]) for r in rows]


async def figures(db: Database) -> tuple[dict[str, int], dict[tuple[str, str], int]]:
    """``({kind: values masked}, {(kind, direction): sends refused})``, all time."""
    async with db.connection("dlp_figures") as conn:
        masked = await conn.fetch("SELECT kind, count(*) AS n FROM dlp_matches GROUP BY kind")
        refused = await conn.fetch("SELECT kind, direction, sum(refused)::bigint AS n FROM dlp_refusals GROUP BY kind, direction")
    return {r["kind"]: r["n"] for r in masked}, {(r["kind"], r["direction"]): r["n"] for r in refused}
