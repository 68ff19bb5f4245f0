"""Storage for pictures and voice notes (``media``, delta 0014).

A row says what an uploaded item is (kind, type, sizes, dimensions, duration, waveform),
who uploaded it into which conversation, its state (``ready``, ``quarantined``,
``rejected``) and where each variant's sealed bytes are in the blob store. Reads JOIN the
conversation's current key row (``conversation_keys``), so a shredded conversation is seen
as such by every node at once, and the caller's membership, so one query answers "may this
user see it".
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from typing import Any

import msgspec

from .db import Conn, Database

__all__ = ["MediaStore", "MediaRow", "VariantRow", "NewMedia"]


class VariantRow(msgspec.Struct, omit_defaults=True, gc=False):
    """One stored variant: blob key, exact content type, size and (pictures) dimensions."""

    key: str
    content_type: str
    bytes: int
    width: int | None = None
    height: int | None = None


class NewMedia(msgspec.Struct, gc=False):
    id: str
    conversation_id: str
    uploader_id: str
    kind: str
    content_type: str
    size: int  # bytes of the full variant
    uploaded_bytes: int
    width: int | None
    height: int | None
    duration_ms: int | None
    waveform: list[int] | None
    state: str
    variants: dict[str, VariantRow]
    key_id: str


class MediaRow(msgspec.Struct, gc=False):
    """A stored item, with the conversation's key row and (when asked for one) the user's membership."""

    id: str
    conversation_id: str
    uploader_id: str
    kind: str
    content_type: str
    size: int  # bytes of the full variant
    width: int | None
    height: int | None
    duration_ms: int | None
    waveform: list[int] | None
    state: str
    variants: dict[str, VariantRow]
    key_id: str
    created_at: dt.datetime
    kek_id: str | None
    wrapped_dek: bytes | None
    shredded: bool
    member: bool
    attached: bool  # a committed message carries it (else: its uploader's draft)


_variants = msgspec.json.Decoder(dict[str, VariantRow])
_COLS = """m.id, m.conversation_id, m.uploader_id, m.kind, m.content_type, m.bytes, m.width, m.height, m.duration_ms,
           m.waveform, m.state, m.variants::text AS variants, m.key_id, m.created_at,
           k.kek_id, k.wrapped_dek, (k.shredded_at IS NOT NULL) AS shredded,
           (m.attached_at IS NOT NULL) AS attached"""


def _row(r: Any, member: bool) -> MediaRow:
    return MediaRow(
        id=str(r["id"]),
        conversation_id=str(r["conversation_id"]),
        uploader_id=str(r["uploader_id"]),
        kind=r["kind"],
        content_type=r["content_type"],
        size=r["bytes"],
        width=r["width"],
        height=r["height"],
        duration_ms=r["duration_ms"],
        waveform=list(r["waveform"]) if r["waveform"] is not None else None,
        state=r["state"],
        variants=_variants.decode(r["variants"]),
        key_id=r["key_id"],
        created_at=r["created_at"],
        kek_id=r["kek_id"],
        wrapped_dek=r["wrapped_dek"],
        shredded=bool(r["shredded"]),
        member=member,
        attached=bool(r["attached"]),
    )


class MediaStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def insert(self, new: NewMedia) -> str:
        """Store the row: ``"stored"``; nothing is stored when the conversation was shredded
        meanwhile (``"gone"``) or the uploader is no longer a member of it (``"not_member"``)."""
        async with self.db.transaction("media_insert") as conn:
            status = await conn.execute(
                """INSERT INTO media (id, conversation_id, uploader_id, kind, content_type, bytes, uploaded_bytes, width,
                                      height, duration_ms, waveform, state, variants, key_id)
                   SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13::jsonb, $14
                   WHERE NOT EXISTS (SELECT 1 FROM conversation_keys WHERE conversation_id = $2 AND shredded_at IS NOT NULL)
                     AND EXISTS (SELECT 1 FROM conversation_members WHERE conversation_id = $2 AND user_id = $3)""",
                uuid.UUID(new.id),
                uuid.UUID(new.conversation_id),
                uuid.UUID(new.uploader_id),
                new.kind,
                new.content_type,
                new.size,
                new.uploaded_bytes,
                new.width,
                new.height,
                new.duration_ms,
                new.waveform,
                new.state,
                msgspec.json.encode(new.variants).decode(),
                new.key_id,
            )
            if status.endswith(" 1"):
                return "stored"
            shredded = await conn.fetchval(
                "SELECT shredded_at IS NOT NULL FROM conversation_keys WHERE conversation_id = $1", uuid.UUID(new.conversation_id)
            )
        return "gone" if shredded else "not_member"

    async def get(self, media_id: str, user_id: str | None = None) -> MediaRow | None:
        """The item (None: no such id); ``member`` says whether ``user_id`` is a member of its conversation now."""
        try:
            mid = uuid.UUID(media_id)
        except ValueError:
            return None
        async with self.db.connection("media_get") as conn:
            r = await conn.fetchrow(
                f"""SELECT {_COLS},
                           EXISTS (SELECT 1 FROM conversation_members cm
                                   WHERE cm.conversation_id = m.conversation_id AND cm.user_id = $2) AS member
                    FROM media m LEFT JOIN conversation_keys k ON k.conversation_id = m.conversation_id
                    WHERE m.id = $1""",
                mid,
                uuid.UUID(user_id) if user_id else None,
            )
        return _row(r, bool(r["member"])) if r is not None else None

    async def pending(self, uploader_id: str) -> tuple[int, int]:
        """How many of ``uploader_id``'s uploads no message carries yet, and their bytes as uploaded."""
        async with self.db.connection("media_pending") as conn:
            r = await conn.fetchrow(
                "SELECT count(*) AS n, coalesce(sum(uploaded_bytes), 0) AS b FROM media WHERE uploader_id = $1 AND attached_at IS NULL",
                uuid.UUID(uploader_id),
            )
        assert r is not None  # an aggregate always answers one row
        return int(r["n"]), int(r["b"])

    @staticmethod
    async def lock_for_send(conn: Conn, media_ids: Sequence[str]) -> set[str]:
        """In a send's transaction: lock the rows of ``media_ids`` against the sweep; returns the ids
        that still exist (an item the sweep deleted meanwhile is missing)."""
        if not media_ids:
            return set()
        rows = await conn.fetch(
            "SELECT id FROM media WHERE id = ANY($1::uuid[]) ORDER BY id FOR UPDATE",
            [uuid.UUID(m) for m in media_ids],
        )
        return {str(r["id"]) for r in rows}

    @staticmethod
    async def mark_attached(conn: Conn, media_ids: Sequence[str]) -> None:
        """In a send's transaction: a committed message carries these items (the first one counts)."""
        if media_ids:
            await conn.execute(
                "UPDATE media SET attached_at = now() WHERE id = ANY($1::uuid[]) AND attached_at IS NULL",
                [uuid.UUID(m) for m in media_ids],
            )

    async def delete_unattached(self, older_than: dt.timedelta, limit: int) -> list[list[str]]:
        """Delete up to ``limit`` items no message carried within ``older_than`` of their upload
        (rows locked by a send in flight are skipped); returns each deleted item's blob keys, for
        the caller to delete once the rows are gone."""
        async with self.db.transaction("media_delete_unattached") as conn:
            rows = await conn.fetch(
                """DELETE FROM media WHERE id IN (SELECT id FROM media
                                                 WHERE attached_at IS NULL AND created_at < now() - $1::interval
                                                 ORDER BY created_at LIMIT $2 FOR UPDATE SKIP LOCKED)
                   RETURNING variants::text AS variants""",
                older_than,
                limit,
            )
        return [[v.key for v in _variants.decode(r["variants"]).values()] for r in rows]

    async def decide(self, media_id: str, state: str) -> bool:
        """Move a quarantined item to ``ready`` or ``rejected`` (the scanner's verdict); False if it was not quarantined."""
        assert state in ("ready", "rejected")
        async with self.db.transaction("media_scanned") as conn:
            status = await conn.execute(
                """UPDATE media SET state = $2, scanned_at = now(), scan_claimed_at = NULL
                   WHERE id = $1 AND state = 'quarantined'""",
                uuid.UUID(media_id),
                state,
            )
        return status.endswith(" 1")

    async def release(self, media_ids: Sequence[str]) -> None:
        """Give claimed items back (their scan failed): the next sweep of any node tries again."""
        if not media_ids:
            return
        async with self.db.transaction("media_scan_release") as conn:
            await conn.execute(
                "UPDATE media SET scan_claimed_at = NULL WHERE id = ANY($1::uuid[]) AND state = 'quarantined'",
                [uuid.UUID(m) for m in media_ids],
            )

    async def claim_quarantined(self, limit: int, stale_after: dt.timedelta) -> list[MediaRow]:
        """Up to ``limit`` quarantined items of live conversations that no node is scanning (or
        whose claim went stale), claimed for this node; oldest first."""
        async with self.db.transaction("media_claim_quarantined") as conn:
            ids = await conn.fetch(
                """UPDATE media SET scan_claimed_at = now()
                   WHERE id IN (SELECT m.id FROM media m
                                WHERE m.state = 'quarantined'
                                  AND (m.scan_claimed_at IS NULL OR m.scan_claimed_at < now() - $2::interval)
                                  -- a shredded conversation's media can never be read, nor scanned
                                  AND NOT EXISTS (SELECT 1 FROM conversation_keys k
                                                  WHERE k.conversation_id = m.conversation_id AND k.shredded_at IS NOT NULL)
                                ORDER BY m.created_at LIMIT $1 FOR UPDATE OF m SKIP LOCKED)
                   RETURNING id""",
                limit,
                stale_after,
            )
            return await self._rows(conn, [r["id"] for r in ids])

    @staticmethod
    async def _rows(conn: Conn, ids: Sequence[uuid.UUID]) -> list[MediaRow]:
        rows = await conn.fetch(
            f"""SELECT {_COLS} FROM media m LEFT JOIN conversation_keys k ON k.conversation_id = m.conversation_id
                WHERE m.id = ANY($1::uuid[]) ORDER BY m.created_at""",
            list(ids),
        )
        return [_row(r, False) for r in rows]
