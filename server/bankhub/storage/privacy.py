"""Storage for read-receipt and presence privacy and the last-seen time (``user_privacy``).

A user without a row has the defaults (:data:`DEFAULT_PRIVACY`): read receipts shared,
last seen visible to every related user. ``last_seen_at`` is written when a user's last
connection closes (batched per node, :meth:`PrivacyStore.write_last_seen`), never per
heartbeat. The facts presence needs besides contacts (the users' current rows, for the
RM-and-customer relationship, and blocks) are read here too, as is whether a direct
conversation's members block one another (no typing or read receipts cross it).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable, Mapping, Sequence

import msgspec

from ..models import Membership, User
from .barriers import NOT_SEPARATED_SQL
from .db import Conn, Database
from .users import _USER_COLS as _USERS_COLS, user_from_row

__all__ = ["Privacy", "DEFAULT_PRIVACY", "LAST_SEEN_CHOICES", "PresenceFacts", "PrivacyStore"]

# the columns user_from_row reads, from the users row aliased u
_USER_COLS = ", ".join("u." + c.strip() for c in _USERS_COLS.split(","))

# a direct conversation (alias c) whose two members block one another, either way
# (contact_blocks; the same fact MessageStore.lock_txn reads for sending)
_DIRECT_BLOCKED = """c.kind = 'direct' AND EXISTS (
    SELECT 1 FROM conversation_members a
    JOIN conversation_members o ON o.conversation_id = a.conversation_id AND o.user_id <> a.user_id
    JOIN contact_blocks b ON b.user_id = a.user_id AND b.blocked_id = o.user_id
    WHERE a.conversation_id = c.id)"""

LAST_SEEN_CHOICES = ("everyone", "contacts", "nobody")


class Privacy(msgspec.Struct, frozen=True):
    """One user's privacy settings. ``last_seen``: who sees my last-seen time
    (``everyone``: every related user; ``contacts``: my accepted contacts; ``nobody``)."""

    share_read_receipts: bool = True
    last_seen: str = "everyone"


DEFAULT_PRIVACY = Privacy()


class PresenceFacts(msgspec.Struct, frozen=True, gc=False):
    """What deciding one user's presence for another takes (:meth:`PrivacyStore.presence_facts`):
    the user's current row (role, RM pointer, disabled), their last-seen setting and time,
    and whether they and the anchor user block one another (either way) or an information
    barrier separates them (``blocked``: presence hides both alike, RM and customer included)."""

    user: User
    last_seen: str
    last_seen_at: dt.datetime | None
    blocked: bool


def _uuids(ids: Iterable[str]) -> list[uuid.UUID]:
    return [uuid.UUID(i) for i in ids]


class PrivacyStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def get(self, user_id: str) -> Privacy:
        async with self.db.connection("privacy_get") as conn:
            row = await conn.fetchrow(
                "SELECT share_read_receipts, last_seen FROM user_privacy WHERE user_id = $1", uuid.UUID(user_id)
            )
        return DEFAULT_PRIVACY if row is None else Privacy(row["share_read_receipts"], row["last_seen"])

    async def put(self, user_id: str, share_read_receipts: bool | None, last_seen: str | None) -> Privacy:
        """Change only the fields given (None keeps the stored value, or the default) in one
        statement: two concurrent changes of different fields both take effect."""
        async with self.db.connection("privacy_put") as conn:
            row = await conn.fetchrow(
                """INSERT INTO user_privacy (user_id, share_read_receipts, last_seen)
                   VALUES ($1, COALESCE($2::boolean, $4::boolean), COALESCE($3::text, $5::text))
                   ON CONFLICT (user_id) DO UPDATE
                   SET share_read_receipts = COALESCE($2::boolean, user_privacy.share_read_receipts),
                       last_seen = COALESCE($3::text, user_privacy.last_seen),
                       updated_at = now()
                   RETURNING share_read_receipts, last_seen""",
                uuid.UUID(user_id),
                share_read_receipts,
                last_seen,
                DEFAULT_PRIVACY.share_read_receipts,
                DEFAULT_PRIVACY.last_seen,
            )
        assert row is not None  # an upsert returns its row
        return Privacy(row["share_read_receipts"], row["last_seen"])

    async def presence_facts(self, anchor_id: str, ids: Sequence[str]) -> dict[str, PresenceFacts]:
        """:class:`PresenceFacts` of the existing users among ``ids`` (``blocked``: with
        ``anchor_id``, the viewer or the watched user), in one query."""
        if not ids:
            return {}
        async with self.db.connection("privacy_presence_facts") as conn:
            rows = await conn.fetch(
                f"""SELECT {_USER_COLS}, COALESCE(p.last_seen, 'everyone') AS last_seen, p.last_seen_at,
                           (EXISTS (SELECT 1 FROM contact_blocks b
                                   WHERE (b.user_id = $1 AND b.blocked_id = u.id)
                                      OR (b.user_id = u.id AND b.blocked_id = $1))
                            OR u.id <> $1 AND NOT {NOT_SEPARATED_SQL("$1::uuid", "u.id")}) AS blocked
                    FROM users u LEFT JOIN user_privacy p ON p.user_id = u.id WHERE u.id = ANY($2)""",
                uuid.UUID(anchor_id),
                _uuids(ids),
            )
        return {
            str(r["id"]): PresenceFacts(user_from_row(r), r["last_seen"], r["last_seen_at"], bool(r["blocked"]))
            for r in rows
        }

    @staticmethod
    async def direct_blocked_in(conn: Conn, conversation_id: str) -> bool:
        """Whether ``conversation_id`` is a direct conversation whose members block one
        another (in the caller's transaction): no read receipts cross it."""
        return bool(
            await conn.fetchval(
                f"SELECT {_DIRECT_BLOCKED} FROM conversations c WHERE c.id = $1", uuid.UUID(conversation_id)
            )
        )

    async def direct_blocked(self, conversation_id: str) -> bool:
        """:meth:`direct_blocked_in` on a connection of its own."""
        async with self.db.connection("privacy_direct_blocked") as conn:
            return await self.direct_blocked_in(conn, conversation_id)

    @staticmethod
    async def opted_out_in(conn: Conn, ids: Sequence[str]) -> set[str]:
        """Those of ``ids`` who do not share read receipts (in the caller's transaction)."""
        if not ids:
            return set()
        rows = await conn.fetch(
            "SELECT user_id FROM user_privacy WHERE user_id = ANY($1) AND NOT share_read_receipts", _uuids(ids)
        )
        return {str(r["user_id"]) for r in rows}

    async def read_positions(self, conversation_id: str, limit: int) -> list[tuple[str, int, bool]]:
        """Up to ``limit`` members of a conversation as ``(user_id, read_seq, shares)``."""
        async with self.db.connection("privacy_read_positions") as conn:
            rows = await conn.fetch(
                """SELECT m.user_id, m.read_seq, COALESCE(p.share_read_receipts, true) AS shares
                   FROM conversation_members m LEFT JOIN user_privacy p ON p.user_id = m.user_id
                   WHERE m.conversation_id = $1 ORDER BY m.user_id LIMIT $2""",
                uuid.UUID(conversation_id),
                limit,
            )
        return [(str(r["user_id"]), r["read_seq"], r["shares"]) for r in rows]

    async def write_last_seen(self, seen: Mapping[str, dt.datetime]) -> None:
        """Record when each user's last connection closed: one statement for the batch."""
        if not seen:
            return
        async with self.db.connection("privacy_last_seen") as conn:
            await conn.execute(
                """INSERT INTO user_privacy (user_id, last_seen_at)
                   SELECT u, t FROM unnest($1::uuid[], $2::timestamptz[]) AS x(u, t)
                   WHERE EXISTS (SELECT 1 FROM users WHERE id = x.u)
                   ON CONFLICT (user_id) DO UPDATE
                   SET last_seen_at = GREATEST(user_privacy.last_seen_at, EXCLUDED.last_seen_at)""",
                _uuids(seen.keys()),
                list(seen.values()),
            )

    async def audience(
        self, conversation_id: str, user_id: str, limit: int
    ) -> tuple[Membership | None, list[str], bool]:
        """The user's membership of a conversation, up to ``limit`` of its members, and
        whether it is a direct conversation whose members block one another, in one query."""
        async with self.db.connection("privacy_audience") as conn:
            row = await conn.fetchrow(
                f"""SELECT c.kind, c.last_seq, m.role, m.read_seq,
                          ARRAY(SELECT o.user_id::text FROM conversation_members o
                                WHERE o.conversation_id = c.id LIMIT $3) AS members,
                          {_DIRECT_BLOCKED} AS blocked
                   FROM conversation_members m JOIN conversations c ON c.id = m.conversation_id
                   WHERE m.conversation_id = $1 AND m.user_id = $2""",
                uuid.UUID(conversation_id),
                uuid.UUID(user_id),
                limit,
            )
        if row is None:
            return None, [], False
        membership = Membership(conversation_id, row["kind"], user_id, row["role"], row["read_seq"], row["last_seq"])
        return membership, list(row["members"]), bool(row["blocked"])
