"""Storage for the org tree and users (tables ``orgs``, ``users``)."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable, Sequence
from typing import Any

import asyncpg
import msgspec

from ..models import OrgRow, Role, User
from .db import Conn, Database

__all__ = ["UserStore", "Credentials", "UsernameTaken", "user_from_row"]


class UsernameTaken(Exception):
    """:meth:`UserStore.create_user` found the username taken (by a concurrent insert, too).

    The caller's transaction is aborted: leave it (the callers answer ``409 conflict``)."""

class Credentials(msgspec.Struct, frozen=True):
    user: User
    password_hash: str
    locked: bool


_USER_COLS = "id, username, display_name, role, org_id, rm_id, disabled, segment, tags, widget_visitor"


def user_from_row(row: Any) -> User:
    return User(
        id=str(row["id"]),
        username=row["username"],
        display_name=row["display_name"],
        role=Role(row["role"]),
        org_id=str(row["org_id"]),
        rm_id=str(row["rm_id"]) if row["rm_id"] is not None else None,
        disabled=row["disabled"],
        segment=row["segment"],
        tags=tuple(row["tags"]),
        # rows of queries that do not select the flag read as no visitor
        visitor=bool(row.get("widget_visitor", False)),
    )


class UserStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def create_org(self, conn: Conn, *, kind: str, code: str, name: str, parent_id: str | None) -> str:
        org_id = uuid.uuid4()
        await conn.execute(
            "INSERT INTO orgs (id, parent_id, kind, code, name) VALUES ($1, $2, $3, $4, $5)",
            org_id,
            uuid.UUID(parent_id) if parent_id else None,
            kind,
            code,
            name,
        )
        return str(org_id)

    async def create_user(
        self,
        conn: Conn,
        *,
        username: str,
        display_name: str,
        role: Role,
        org_id: str,
        password_hash: str,
        rm_id: str | None = None,
        segment: str | None = None,
        tags: Sequence[str] = (),
    ) -> User:
        try:
            row = await conn.fetchrow(
                f"""INSERT INTO users (id, username, display_name, role, org_id, rm_id, password_hash, segment, tags)
                    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING {_USER_COLS}""",
                uuid.uuid4(),
                username,
                display_name,
                role.value,
                uuid.UUID(org_id),
                uuid.UUID(rm_id) if rm_id else None,
                password_hash,
                segment,
                list(tags),
            )
        except asyncpg.UniqueViolationError as exc:
            if exc.constraint_name == "users_username_key":
                raise UsernameTaken(username) from None  # no DB detail: it quotes the row
            raise
        return user_from_row(row)

    async def credentials(self, username: str) -> Credentials | None:
        """The user, their password hash and lockout state, for a login attempt."""
        async with self.db.connection("user_credentials") as conn:
            row = await conn.fetchrow(
                f"""SELECT {_USER_COLS}, password_hash, locked_until > now() AS locked
                    FROM users WHERE username = $1""",
                username,
            )
        if row is None:
            return None
        return Credentials(user=user_from_row(row), password_hash=row["password_hash"], locked=bool(row["locked"]))

    async def login_failed(
        self, username: str, *, max_failures: int, lock_for: dt.timedelta, conn: Conn | None = None
    ) -> str | None:
        """Count a failed sign-in for ``username``; returns the user's id if this failure locked the account.

        One statement whether or not the name exists (an unknown name matches no row), so a
        failure costs the same for every name. While a lock holds nothing is counted (the lock
        is not extended). A lock that has lapsed restarts the count: the first failure after it
        is failure 1, not ``max_failures + 1``. At ``max_failures`` in a row the account locks
        for ``lock_for``. Runs in ``conn``'s transaction when given (with the failure's audit rows).
        """
        if conn is None:
            async with self.db.connection("user_login_failed") as own:
                return await self.login_failed(username, max_failures=max_failures, lock_for=lock_for, conn=own)
        # a lapsed lock (locked_until in the past) counts as zero failures so far
        row = await conn.fetchrow(
            """UPDATE users SET
                   failed_logins = CASE WHEN locked_until IS NULL THEN failed_logins ELSE 0 END + 1,
                   locked_until = CASE WHEN CASE WHEN locked_until IS NULL THEN failed_logins ELSE 0 END + 1 >= $2
                                       THEN now() + $3::interval END
               WHERE username = $1 AND (locked_until IS NULL OR locked_until <= now())
               RETURNING id, locked_until IS NOT NULL AS locked""",
            username,
            max_failures,
            lock_for,
        )
        return str(row["id"]) if row is not None and row["locked"] else None

    async def login_succeeded(self, user_id: str) -> None:
        """A successful sign-in: the failure count restarts and any lapsed lock is cleared."""
        async with self.db.connection("user_login_succeeded") as conn:
            await conn.execute(
                """UPDATE users SET failed_logins = 0, locked_until = NULL
                   WHERE id = $1 AND (failed_logins > 0 OR locked_until IS NOT NULL)""",
                uuid.UUID(user_id),
            )

    async def set_role(self, user_id: str, role: Role) -> None:
        async with self.db.connection("user_set_role") as conn:
            await self.set_role_in(conn, user_id, role)

    @staticmethod
    async def set_role_in(conn: Conn, user_id: str, role: Role) -> None:
        """:meth:`set_role` inside the caller's transaction (an approved dual-control request)."""
        # only customers have a relationship manager
        await conn.execute(
            "UPDATE users SET role = $2, rm_id = CASE WHEN $2 = 'customer' THEN rm_id END WHERE id = $1",
            uuid.UUID(user_id),
            role.value,
        )

    async def reassign_customer(self, customer_id: str, old_rm_id: str | None, new_rm_id: str) -> str | None:
        """Give a customer a new RM. The direct conversation with the old RM, if any, passes to the
        new RM with its history; the old RM stops being a member in the same transaction.

        Returns the handed-over conversation's id (None when there was none to hand over).
        """
        async with self.db.transaction("customer_reassign") as conn:
            return await self.move_customer(conn, customer_id, old_rm_id, new_rm_id)

    @staticmethod
    async def move_customer(conn: Conn, customer_id: str, old_rm_id: str | None, new_rm_id: str) -> str | None:
        """:meth:`reassign_customer` inside the caller's transaction (a whole book is handed
        over in one). Returns the handed-over conversation's id, or None."""
        customer, new_rm = uuid.UUID(customer_id), uuid.UUID(new_rm_id)
        await conn.execute("UPDATE users SET rm_id = $2 WHERE id = $1", customer, new_rm)
        if old_rm_id is None:
            return None
        old_rm = uuid.UUID(old_rm_id)
        conv = await conn.fetchval(
            "SELECT id FROM conversations WHERE direct_key = $1 FOR UPDATE", ":".join(sorted((customer_id, old_rm_id)))
        )
        if conv is None:
            return None
        await conn.execute("DELETE FROM conversation_members WHERE conversation_id = $1 AND user_id = $2", conv, old_rm)
        new_key = ":".join(sorted((customer_id, new_rm_id)))
        if await conn.fetchval("SELECT 1 FROM conversations WHERE direct_key = $1", new_key):
            # the customer already talks with the new RM (an earlier assignment): keep that one as
            # the direct conversation; this one stays as the customer's history only
            await conn.execute("UPDATE conversations SET kind = 'group', direct_key = NULL, title = 'Previous RM' WHERE id = $1", conv)
            return None
        await conn.execute("UPDATE conversations SET direct_key = $2 WHERE id = $1", conv, new_key)
        # the new RM starts with the history read: it is a handover, not a flood of unread messages
        await conn.execute(
            """INSERT INTO conversation_members (conversation_id, user_id, role, read_seq)
               SELECT $1, $2, 'member', last_seq FROM conversations WHERE id = $1""",
            conv,
            new_rm,
        )
        return str(conv)

    async def org_ancestry(self, org_id: str) -> list[str]:
        """The org and its ancestors up to the head office (policy facts for branch admins)."""
        async with self.db.connection("org_ancestry") as conn:
            return await self.org_ancestry_in(conn, org_id)

    @staticmethod
    async def org_ancestry_in(conn: Conn, org_id: str) -> list[str]:
        """:meth:`org_ancestry`, in the caller's transaction."""
        rows = await conn.fetch(
            """WITH RECURSIVE up(id, parent_id, depth) AS (
                   SELECT id, parent_id, 0 FROM orgs WHERE id = $1
                   UNION ALL SELECT o.id, o.parent_id, up.depth + 1 FROM orgs o JOIN up ON o.id = up.parent_id)
               SELECT id FROM up ORDER BY depth""",
            uuid.UUID(org_id),
        )
        return [str(r["id"]) for r in rows]

    async def org_subtree(self, root_id: str, limit: int, *, after: str | None = None) -> list[OrgRow]:
        """Up to ``limit`` orgs of the subtree under ``root_id`` (itself included), by code,
        after the code ``after`` when given (keyset paging)."""
        async with self.db.connection("org_subtree") as conn:
            rows = await conn.fetch(
                """WITH RECURSIVE sub(id) AS (
                       SELECT id FROM orgs WHERE id = $1
                       UNION SELECT o.id FROM orgs o JOIN sub ON o.parent_id = sub.id)
                   SELECT o.id, o.code, o.name, o.kind, p.code AS parent_code
                   FROM orgs o JOIN sub ON sub.id = o.id LEFT JOIN orgs p ON p.id = o.parent_id
                   WHERE $2::text IS NULL OR o.code > $2
                   ORDER BY o.code LIMIT $3""",
                uuid.UUID(root_id),
                after,
                limit,
            )
        return [OrgRow(id=str(r["id"]), code=r["code"], name=r["name"], kind=r["kind"], parent_code=r["parent_code"]) for r in rows]

    async def org_ids_by_code(self, codes: Sequence[str]) -> dict[str, str]:
        """Org ids by org code (``"BJ"``), for the codes that exist."""
        async with self.db.connection("org_by_code") as conn:
            rows = await conn.fetch("SELECT code, id FROM orgs WHERE code = ANY ($1::text[])", list(codes))
        return {r["code"]: str(r["id"]) for r in rows}

    async def set_password_hash(self, user_id: str, password_hash: str) -> None:
        async with self.db.connection("user_rehash_password") as conn:
            await conn.execute("UPDATE users SET password_hash = $2 WHERE id = $1", uuid.UUID(user_id), password_hash)

    async def by_username(self, username: str) -> User | None:
        async with self.db.connection("user_by_username") as conn:
            row = await conn.fetchrow(f"SELECT {_USER_COLS} FROM users WHERE username = $1", username)
        return None if row is None else user_from_row(row)

    async def by_ids(self, ids: Iterable[str]) -> dict[str, User]:
        keys: Sequence[uuid.UUID] = [uuid.UUID(i) for i in set(ids)]
        async with self.db.connection("users_by_ids") as conn:
            rows = await conn.fetch(f"SELECT {_USER_COLS} FROM users WHERE id = ANY($1::uuid[])", keys)
        return {str(r["id"]): user_from_row(r) for r in rows}

    @staticmethod
    async def lock_shared(conn: Conn, ids: Iterable[str]) -> dict[str, User]:
        """The users ``ids`` as they are now, share-locked until the caller's transaction
        ends (in id order: no deadlocks): a role change or disabling waits for it."""
        keys = sorted({uuid.UUID(i) for i in ids})
        rows = await conn.fetch(f"SELECT {_USER_COLS} FROM users WHERE id = ANY($1::uuid[]) ORDER BY id FOR SHARE", keys)
        return {str(r["id"]): user_from_row(r) for r in rows}

    @staticmethod
    async def username_exists(conn: Conn, username: str) -> bool:
        """Whether ``username`` is taken, in the caller's transaction."""
        return bool(await conn.fetchval("SELECT 1 FROM users WHERE username = $1", username))

    async def count(self) -> int:
        async with self.db.connection("users_count") as conn:
            return int(await conn.fetchval("SELECT count(*) FROM users"))
