"""Storage for relationship managers: their book, profile cards, availability and
auto-replies, and handovers (``users``, ``orgs``, ``rm_status``, ``rm_auto_replies``).

A handover (one customer or a whole book) runs in the caller's transaction through
:meth:`RmStore.hand_over`, so the caller can audit every customer in the same
transaction: the new RM, the conversation move and the audit rows commit together or not
at all.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from typing import Any

import msgspec

from ..models import BookKey, RmListed
from ..protocol.frames import CustomerCard, StaffCard
from .conversations import direct_key
from .barriers import NOT_SEPARATED_SQL
from .db import Conn, Database
from .users import UserStore

__all__ = ["RmStore", "BookEntry", "RmStatus", "HandedOver", "RM_STATUSES"]

RM_STATUSES = ("online", "away", "off_duty")

class BookEntry(msgspec.Struct):
    """One customer in an RM's book: the card, and the RM's side of their direct conversation."""

    customer: CustomerCard
    conversation_id: str | None
    last_seq: int
    unread: int
    last_message_ts: int | None
    key: BookKey | None = None  # the position in the book (see RmStore.book)
    last_sender_id: str | None = None  # who wrote the last message: metadata, never its text


class RmStatus(msgspec.Struct):
    user_id: str
    status: str
    message: str | None
    period: int
    since: dt.datetime | None


class HandedOver(msgspec.Struct):
    """One customer moved to a new RM: ``old_conversation_id`` is the direct conversation
    the old RM lost (None: they had none); ``conversation_id`` the customer's direct
    conversation with the new RM now (None: none yet)."""

    customer_id: str
    customer_username: str
    old_rm_id: str | None
    old_conversation_id: str | None
    conversation_id: str | None


_CARD = """SELECT u.id, u.username, u.display_name, u.role, u.segment, u.account_class, u.tags, u.rm_id,
                  o.code AS branch, o.name AS org_name,
                  r.username AS rm_username, r.display_name AS rm_display_name
           FROM users u JOIN orgs o ON o.id = u.org_id LEFT JOIN users r ON r.id = u.rm_id"""


def card_from_row(row: Any) -> CustomerCard:
    rm = None
    if row["rm_id"] is not None:
        rm = StaffCard(user_id=str(row["rm_id"]), username=row["rm_username"], display_name=row["rm_display_name"])
    return CustomerCard(
        user_id=str(row["id"]),
        username=row["username"],
        display_name=row["display_name"],
        branch=row["branch"],
        org_name=row["org_name"],
        segment=row["segment"],
        account_class=row["account_class"],
        tags=list(row["tags"] or []),
        rm=rm,
    )


def _ms(ts: dt.datetime | None) -> int | None:
    return None if ts is None else int(ts.timestamp() * 1000)


class RmStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def book(
        self, rm_id: str, *, after: BookKey | None = None, limit: int | None = None
    ) -> list[BookEntry]:
        """The RM's customers with their card and the RM's unread count and last message
        time in each direct conversation; most recent conversation first, then by display
        name and username (:attr:`BookEntry.key`). All of them, or up to ``limit`` after the
        sort key ``after`` (keyset paging)."""
        async with self.db.connection("rm_book") as conn:
            rows = await conn.fetch(
                """SELECT * FROM (
                     SELECT u.id, u.username, u.display_name, u.role, u.segment, u.account_class, u.tags, u.rm_id,
                            o.code AS branch, o.name AS org_name,
                            r.username AS rm_username, r.display_name AS rm_display_name,
                            c.id AS conversation_id, c.last_seq, c.read_seq, x.created_at AS last_at,
                            x.sender_id AS last_sender
                     FROM users u JOIN orgs o ON o.id = u.org_id LEFT JOIN users r ON r.id = u.rm_id
                     LEFT JOIN (SELECT c.id, c.direct_key, c.last_seq, m.read_seq FROM conversations c
                                JOIN conversation_members m ON m.conversation_id = c.id AND m.user_id = $1::uuid) c
                       -- storage.conversations.direct_key: the two ids in code-point order
                       ON c.direct_key = CASE WHEN u.id::text COLLATE "C" < $1::uuid::text COLLATE "C"
                                              THEN u.id::text || ':' || $1::uuid::text ELSE $1::uuid::text || ':' || u.id::text END
                     LEFT JOIN messages x ON x.conversation_id = c.id AND x.seq = c.last_seq
                     WHERE u.rm_id = $1::uuid AND u.role = 'customer') t
                   WHERE $4::text IS NULL
                      OR COALESCE(t.last_at, '-infinity') < COALESCE($2::timestamptz, '-infinity')
                      OR (COALESCE(t.last_at, '-infinity') = COALESCE($2::timestamptz, '-infinity')
                          AND (t.display_name, t.username) > ($3::text, $4::text))
                   ORDER BY COALESCE(t.last_at, '-infinity') DESC, t.display_name, t.username LIMIT $5""",
                uuid.UUID(rm_id),
                *(after if after else (None, None, None)),
                limit,
            )
        return [
            BookEntry(
                customer=card_from_row(r),
                conversation_id=str(r["conversation_id"]) if r["conversation_id"] else None,
                last_seq=r["last_seq"] or 0,
                unread=r["last_seq"] - r["read_seq"] if r["conversation_id"] else 0,
                last_message_ts=_ms(r["last_at"]),
                key=(r["last_at"], r["display_name"], r["username"]),
                last_sender_id=None if r["last_sender"] is None else str(r["last_sender"]),
            )
            for r in rows
        ]

    async def card(self, customer_id: str) -> CustomerCard | None:
        async with self.db.connection("customer_card") as conn:
            row = await conn.fetchrow(_CARD + " WHERE u.id = $1 AND u.role = 'customer'", uuid.UUID(customer_id))
        return None if row is None else card_from_row(row)

    async def managers(
        self, root_org_id: str | None, *, after: str | None, limit: int, viewer_id: str | None = None
    ) -> list[RmListed]:
        """Up to ``limit`` active RMs of the org subtree under ``root_org_id`` (every org when
        None), by username after ``after`` (keyset paging), with their number of customers;
        without those an information barrier separates from ``viewer_id`` (when given)."""
        async with self.db.connection("rm_directory") as conn:
            rows = await conn.fetch(
                f"""WITH RECURSIVE sub(id) AS (
                       SELECT id FROM orgs WHERE $1::uuid IS NULL OR id = $1::uuid
                       UNION SELECT o.id FROM orgs o JOIN sub ON o.parent_id = sub.id)
                   SELECT u.id, u.username, u.display_name, o.code AS branch, o.name AS org_name,
                          (SELECT count(*) FROM users c WHERE c.rm_id = u.id AND c.role = 'customer') AS customers,
                          COALESCE(s.status, 'online') AS status
                   FROM users u JOIN sub ON sub.id = u.org_id JOIN orgs o ON o.id = u.org_id
                   LEFT JOIN rm_status s ON s.user_id = u.id
                   WHERE u.role = 'rm' AND NOT u.disabled AND ($2::text IS NULL OR u.username > $2)
                     AND {NOT_SEPARATED_SQL("$4::uuid", "u.id")}
                   ORDER BY u.username LIMIT $3""",
                None if root_org_id is None else uuid.UUID(root_org_id),
                after,
                limit,
                None if viewer_id is None else uuid.UUID(viewer_id),
            )
        return [
            RmListed(
                user_id=str(r["id"]),
                username=r["username"],
                display_name=r["display_name"],
                branch=r["branch"],
                org_name=r["org_name"],
                customers=int(r["customers"]),
                status=r["status"],
            )
            for r in rows
        ]

    async def status(self, rm_id: str) -> RmStatus:
        """The RM's availability (online when never declared)."""
        async with self.db.connection("rm_status") as conn:
            row = await conn.fetchrow("SELECT status, message, period, since FROM rm_status WHERE user_id = $1", uuid.UUID(rm_id))
        if row is None:
            return RmStatus(user_id=rm_id, status="online", message=None, period=0, since=None)
        return RmStatus(user_id=rm_id, status=row["status"], message=row["message"], period=row["period"], since=row["since"])

    async def set_status(self, rm_id: str, status: str, message: str | None) -> RmStatus:
        """Declare the RM's availability. Entering ``away`` or ``off_duty`` (from any other
        status) starts a new period: each customer gets one auto-reply per period."""
        async with self.db.connection("rm_set_status") as conn:
            row = await conn.fetchrow(
                """INSERT INTO rm_status AS s (user_id, status, message, period, since)
                   VALUES ($1, $2, $3, CASE WHEN $2 = 'online' THEN 0 ELSE 1 END, now())
                   ON CONFLICT (user_id) DO UPDATE SET
                       status = EXCLUDED.status,
                       message = EXCLUDED.message,
                       period = s.period + CASE WHEN EXCLUDED.status <> 'online' AND EXCLUDED.status <> s.status THEN 1 ELSE 0 END,
                       since = CASE WHEN EXCLUDED.status <> s.status THEN now() ELSE s.since END
                   RETURNING status, message, period, since""",
                uuid.UUID(rm_id),
                status,
                message,
            )
        assert row is not None
        return RmStatus(user_id=rm_id, status=row["status"], message=row["message"], period=row["period"], since=row["since"])

    async def unavailable_rms(self) -> set[str]:
        """RMs who are away or off duty now (their customers get auto-replies)."""
        async with self.db.connection("rm_unavailable") as conn:
            rows = await conn.fetch("SELECT user_id FROM rm_status WHERE status <> 'online'")
        return {str(r["user_id"]) for r in rows}

    async def claim_auto_reply(self, rm_id: str, customer_id: str) -> RmStatus | None:
        """The RM's status if ``customer_id`` is due an auto-reply now — the RM is away or off
        duty and this customer had none in the current period — else None. Claimed
        atomically: concurrent messages of one customer get one auto-reply."""
        async with self.db.connection("rm_claim_auto_reply") as conn:
            row = await conn.fetchrow(
                """WITH s AS (SELECT user_id, status, message, period, since FROM rm_status
                              WHERE user_id = $1 AND status <> 'online'),
                        claimed AS (
                            INSERT INTO rm_auto_replies AS a (rm_id, customer_id, period)
                            SELECT user_id, $2, period FROM s
                            ON CONFLICT (rm_id, customer_id) DO UPDATE
                                SET period = EXCLUDED.period, replied_at = now()
                                WHERE a.period < EXCLUDED.period
                            RETURNING period)
                   SELECT s.status, s.message, s.period, s.since FROM s JOIN claimed ON claimed.period = s.period""",
                uuid.UUID(rm_id),
                uuid.UUID(customer_id),
            )
        if row is None:
            return None
        return RmStatus(user_id=rm_id, status=row["status"], message=row["message"], period=row["period"], since=row["since"])

    @staticmethod
    async def set_account_class(conn: Conn, customer_id: str, account_class: str | None) -> None:
        """Record a customer's account class (``I``, ``II``, ``III``) from core banking."""
        await conn.execute("UPDATE users SET account_class = $2 WHERE id = $1 AND role = 'customer'", uuid.UUID(customer_id), account_class)

    @staticmethod
    async def lock_customer(conn: Conn, customer_id: str) -> str | None:
        """Lock a customer's row for a reassignment; returns their current RM's id."""
        rm = await conn.fetchval("SELECT rm_id FROM users WHERE id = $1 FOR NO KEY UPDATE", uuid.UUID(customer_id))
        return None if rm is None else str(rm)

    @staticmethod
    async def book_of(conn: Conn, rm_id: str, usernames: Sequence[str] | None) -> list[tuple[str, str]]:
        """Lock and return ``(customer_id, username)`` of the RM's customers (only
        ``usernames`` when given), in id order: a handover holds them until it commits.
        ``FOR NO KEY UPDATE``, like the reassignment's own UPDATE: it excludes another
        reassignment but not the foreign-key checks of the customer's messages being
        committed meanwhile (which lock the conversation first)."""
        rows = await conn.fetch(
            """SELECT id, username FROM users
               WHERE rm_id = $1 AND role = 'customer' AND ($2::text[] IS NULL OR username = ANY($2::text[]))
               ORDER BY id FOR NO KEY UPDATE""",
            uuid.UUID(rm_id),
            None if usernames is None else list(usernames),
        )
        return [(str(r["id"]), r["username"]) for r in rows]

    @staticmethod
    async def lock_direct_conversations(conn: Conn, customer_ids: Sequence[str], rm_id: str) -> None:
        """Lock the direct conversations between ``rm_id`` and these customers, in id order.

        A handover moves many conversations; message commits lock the conversations of a
        batch in id order too. Taking them all here first, in the same order, keeps the two
        from deadlocking (moving them one by one in customer order would not)."""
        await conn.execute(
            "SELECT id FROM conversations WHERE direct_key = ANY($1::text[]) ORDER BY id FOR UPDATE",
            [direct_key(c, rm_id) for c in customer_ids],
        )

    @staticmethod
    async def hand_over(conn: Conn, customer_id: str, username: str, old_rm_id: str | None, new_rm_id: str) -> HandedOver:
        """Move one customer to ``new_rm_id`` inside the caller's transaction; see
        :meth:`UserStore.move_customer` (the direct conversation and its history follow)."""

        async def direct(rm: str | None) -> str | None:
            if rm is None:
                return None
            found = await conn.fetchval("SELECT id FROM conversations WHERE direct_key = $1", direct_key(customer_id, rm))
            return None if found is None else str(found)

        old_conv = await direct(old_rm_id)
        await UserStore.move_customer(conn, customer_id, old_rm_id, new_rm_id)
        return HandedOver(
            customer_id=customer_id,
            customer_username=username,
            old_rm_id=old_rm_id,
            old_conversation_id=old_conv,
            conversation_id=await direct(new_rm_id),
        )
