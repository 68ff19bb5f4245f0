"""Storage for conversations and their members (``conversations``, ``conversation_members``)."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from ..models import ConversationKey, ConversationSummary, Membership
from .db import Conn, Database

__all__ = ["ConversationStore", "direct_key", "MAX_LISTED_MEMBERS"]

MAX_LISTED_MEMBERS = 100
"""Most member ids a conversation summary carries (its first by id); a group's full member
list pages at ``GET /v1/groups/{id}/members``."""


def direct_key(a: str, b: str) -> str:
    """The unique key of the direct conversation between two users (order-independent)."""
    return ":".join(sorted((a, b)))


class ConversationStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def get_or_create_direct(
        self, creator_id: str, peer_id: str, check: Callable[[Conn], Awaitable[None]] | None = None
    ) -> tuple[str, bool]:
        """The direct conversation between two users, created on first use. Returns ``(id, created)``.
        ``check`` runs first in the same transaction (a refusal it raises changes nothing)."""
        key = direct_key(creator_id, peer_id)
        async with self.db.transaction("conversation_open_direct") as conn:
            if check is not None:
                await check(conn)
            new_id = uuid.uuid4()
            row = await conn.fetchrow(
                """INSERT INTO conversations (id, kind, created_by, direct_key) VALUES ($1, 'direct', $2, $3)
                   ON CONFLICT (direct_key) DO NOTHING RETURNING id""",
                new_id,
                uuid.UUID(creator_id),
                key,
            )
            if row is None:
                existing = await conn.fetchval("SELECT id FROM conversations WHERE direct_key = $1", key)
                return str(existing), False
            await conn.executemany(
                "INSERT INTO conversation_members (conversation_id, user_id, role) VALUES ($1, $2, 'member')",
                [(new_id, uuid.UUID(creator_id)), (new_id, uuid.UUID(peer_id))],
            )
        return str(new_id), True

    async def create_group(self, creator_id: str, title: str, member_ids: Sequence[str]) -> str:
        conv_id = uuid.uuid4()
        others = [m for m in dict.fromkeys(member_ids) if m != creator_id]
        async with self.db.transaction("conversation_create_group") as conn:
            await conn.execute(
                "INSERT INTO conversations (id, kind, title, created_by) VALUES ($1, 'group', $2, $3)",
                conv_id,
                title,
                uuid.UUID(creator_id),
            )
            await conn.executemany(
                "INSERT INTO conversation_members (conversation_id, user_id, role) VALUES ($1, $2, $3)",
                [(conv_id, uuid.UUID(creator_id), "owner")] + [(conv_id, uuid.UUID(m), "member") for m in others],
            )
        return str(conv_id)

    async def membership(self, conversation_id: str, user_id: str) -> Membership | None:
        try:
            conv = uuid.UUID(conversation_id)
        except ValueError:
            return None
        async with self.db.connection("conversation_membership") as conn:
            row = await conn.fetchrow(
                """SELECT c.kind, c.last_seq, m.role, m.read_seq
                   FROM conversation_members m JOIN conversations c ON c.id = m.conversation_id
                   WHERE m.conversation_id = $1 AND m.user_id = $2""",
                conv,
                uuid.UUID(user_id),
            )
        if row is None:
            return None
        return Membership(conversation_id, row["kind"], user_id, row["role"], row["read_seq"], row["last_seq"])

    async def exists(self, conversation_id: str) -> bool:
        async with self.db.connection("conversation_exists") as conn:
            return bool(await conn.fetchval("SELECT 1 FROM conversations WHERE id = $1", uuid.UUID(conversation_id)))

    async def members(self, conversation_id: str) -> list[str]:
        async with self.db.connection("conversation_members") as conn:
            rows = await conn.fetch(
                "SELECT user_id FROM conversation_members WHERE conversation_id = $1", uuid.UUID(conversation_id)
            )
        return [str(r["user_id"]) for r in rows]

    async def mark_read(self, conn: Conn, conversation_id: str, user_id: str, seq: int) -> tuple[int, int, list[str]] | None:
        """Raise the member's read position to ``seq`` (clamped to the last seq; never lowered),
        in the caller's transaction.

        Returns ``(read_seq, last_seq, member_ids)`` or None if the user is not a member.
        """
        row = await conn.fetchrow(
            """UPDATE conversation_members m
               SET read_seq = GREATEST(m.read_seq, LEAST($3, c.last_seq))
               FROM conversations c
               WHERE c.id = m.conversation_id AND m.conversation_id = $1 AND m.user_id = $2
               RETURNING m.read_seq, c.last_seq""",
            uuid.UUID(conversation_id),
            uuid.UUID(user_id),
            seq,
        )
        if row is None:
            return None
        members = await conn.fetch("SELECT user_id FROM conversation_members WHERE conversation_id = $1", uuid.UUID(conversation_id))
        return row["read_seq"], row["last_seq"], [str(r["user_id"]) for r in members]

    async def list_for_user(
        self, user_id: str, *, after: ConversationKey | None = None, limit: int | None = None
    ) -> list[ConversationSummary]:
        """The user's conversations, most recent activity first: all, or up to ``limit`` after
        the sort key ``after`` (see :meth:`page_for_user`)."""
        return [s for s, _ in await self.page_for_user(user_id, after=after, limit=limit)]

    async def page_for_user(
        self, user_id: str, *, after: ConversationKey | None = None, limit: int | None = None
    ) -> list[tuple[ConversationSummary, ConversationKey]]:
        """:meth:`list_for_user` with each conversation's sort key ``(last activity, created_at,
        id)``, descending; a conversation without messages (last activity None) sorts last.
        Activity moves a conversation to the front, so a client paging while messages arrive
        may see it twice or (if it moved behind the cursor) learn of it from the live stream."""
        async with self.db.connection("conversations_for_user") as conn:
            rows = await conn.fetch(
                """SELECT * FROM (
                     SELECT c.id, c.kind, c.title, c.last_seq, m.read_seq, c.created_at,
                            -- bounded: an org group has every member of staff of a subtree
                            -- (the whole list pages at GET /v1/groups/{id}/members)
                            (SELECT array_agg(o.user_id::text ORDER BY o.user_id)
                               FROM (SELECT user_id FROM conversation_members
                                     WHERE conversation_id = c.id ORDER BY user_id LIMIT $6) o) AS members,
                            (SELECT x.created_at FROM messages x
                               WHERE x.conversation_id = c.id AND x.seq = c.last_seq) AS last_at
                     FROM conversation_members m JOIN conversations c ON c.id = m.conversation_id
                     WHERE m.user_id = $1) t
                   WHERE $3::timestamptz IS NULL
                      OR (COALESCE(t.last_at, '-infinity'), t.created_at, t.id)
                         < (COALESCE($2::timestamptz, '-infinity'), $3::timestamptz, $4::uuid)
                   ORDER BY COALESCE(t.last_at, '-infinity') DESC, t.created_at DESC, t.id DESC LIMIT $5""",
                uuid.UUID(user_id),
                after[0] if after else None,
                after[1] if after else None,
                after[2] if after else None,
                limit,
                MAX_LISTED_MEMBERS,
            )
        return [
            (
                self._summary(r),
                (r["last_at"], r["created_at"], r["id"]),
            )
            for r in rows
        ]

    @staticmethod
    def _summary(r: Any) -> ConversationSummary:
        return ConversationSummary(
            id=str(r["id"]),
            kind=r["kind"],
            title=r["title"],
            last_seq=r["last_seq"],
            read_seq=r["read_seq"],
            unread=r["last_seq"] - r["read_seq"],
            members=list(r["members"] or []),
            last_message_ts=int(r["last_at"].timestamp() * 1000) if r["last_at"] else None,
        )
