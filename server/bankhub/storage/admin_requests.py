"""Storage for dual-control requests (table ``admin_requests``).

A request to create an administrative account, or to move a user into an administrative
role, waits here until a second administrator approves or rejects it, or it expires.
Decisions run in the caller's transaction (:meth:`AdminRequestStore.lock`,
:meth:`AdminRequestStore.decide`) so the change, the decision and their audit rows commit
together. The new account's password hash is held only while the request is pending.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import asyncpg
import msgspec

from ..models import RequestKey
from .db import Conn, Database

__all__ = ["AdminRequestStore", "AdminRequestRow", "RequestPending"]


class RequestPending(Exception):
    """:meth:`AdminRequestStore.create` found a pending request about the username already
    (a concurrent filing, too: the unique index ``admin_requests_one_pending``). The
    caller's transaction is aborted; the callers answer ``409 conflict``."""


class AdminRequestRow(msgspec.Struct, frozen=True):
    id: str
    kind: str  # create_user | change_role
    requested_by: str
    requested_by_username: str
    username: str
    target_user_id: str | None
    role: str
    from_role: str | None
    org_id: str
    org_code: str
    display_name: str | None
    status: str  # pending | approved | rejected | expired
    created_at: dt.datetime
    expires_at: dt.datetime
    decided_by: str | None
    decided_by_username: str | None
    decided_at: dt.datetime | None
    result_user_id: str | None

    @property
    def key(self) -> RequestKey:
        return (self.created_at, self.id)


_SELECT = """SELECT a.id, a.kind, a.requested_by, q.username AS requested_by_username, a.username, a.target_user_id,
                    a.role, a.from_role, a.org_id, o.code AS org_code, a.display_name, a.status, a.created_at,
                    a.expires_at, a.decided_by, d.username AS decided_by_username, a.decided_at, a.result_user_id
             FROM admin_requests a JOIN users q ON q.id = a.requested_by JOIN orgs o ON o.id = a.org_id
             LEFT JOIN users d ON d.id = a.decided_by"""


def _sid(value: Any) -> str | None:
    return None if value is None else str(value)


def _row(r: Any) -> AdminRequestRow:
    return AdminRequestRow(
        id=str(r["id"]),
        kind=r["kind"],
        requested_by=str(r["requested_by"]),
        requested_by_username=r["requested_by_username"],
        username=r["username"],
        target_user_id=_sid(r["target_user_id"]),
        role=r["role"],
        from_role=r["from_role"],
        org_id=str(r["org_id"]),
        org_code=r["org_code"],
        display_name=r["display_name"],
        status=r["status"],
        created_at=r["created_at"],
        expires_at=r["expires_at"],
        decided_by=_sid(r["decided_by"]),
        decided_by_username=r["decided_by_username"],
        decided_at=r["decided_at"],
        result_user_id=_sid(r["result_user_id"]),
    )


def _uid(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


class AdminRequestStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    @staticmethod
    async def create(
        conn: Conn,
        *,
        kind: str,
        requested_by: str,
        username: str,
        role: str,
        org_id: str,
        ttl: dt.timedelta,
        target_user_id: str | None = None,
        from_role: str | None = None,
        display_name: str | None = None,
        password_hash: str | None = None,
    ) -> AdminRequestRow:
        """File a pending request (in the caller's transaction, with its audit row).

        At most one request per username is pending (a unique index): :class:`RequestPending`
        when one is. Call :meth:`expire_lapsed` first, so a lapsed one does not count."""
        request_id = uuid.uuid4()
        try:
            await conn.execute(
                """INSERT INTO admin_requests (id, kind, requested_by, username, target_user_id, role, from_role, org_id,
                                               display_name, password_hash, expires_at)
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, clock_timestamp() + $11::interval)""",
                request_id,
                kind,
                uuid.UUID(requested_by),
                username,
                None if target_user_id is None else uuid.UUID(target_user_id),
                role,
                from_role,
                uuid.UUID(org_id),
                display_name,
                password_hash,
                ttl,
            )
        except asyncpg.UniqueViolationError as exc:
            if exc.constraint_name == "admin_requests_one_pending":
                raise RequestPending(username) from None  # no DB detail: it quotes the row
            raise
        row = await conn.fetchrow(_SELECT + " WHERE a.id = $1", request_id)
        assert row is not None
        return _row(row)

    @staticmethod
    async def live_for_username(conn: Conn, username: str) -> bool:
        """Whether a pending, unexpired request already concerns ``username``."""
        return bool(
            await conn.fetchval(
                "SELECT 1 FROM admin_requests WHERE username = $1 AND status = 'pending' AND expires_at > clock_timestamp()",
                username,
            )
        )

    @staticmethod
    async def expire_lapsed(conn: Conn, username: str) -> list[AdminRequestRow]:
        """Mark the pending requests about ``username`` that are past ``expires_at`` as
        expired (their password hash dropped), in the caller's transaction; returns them,
        for the caller's audit rows. A lapsed request no longer blocks a new one."""
        ids = await conn.fetch(
            """UPDATE admin_requests SET status = 'expired', decided_at = clock_timestamp(), password_hash = NULL
               WHERE username = $1 AND status = 'pending' AND expires_at <= clock_timestamp() RETURNING id""",
            username,
        )
        if not ids:
            return []
        rows = await conn.fetch(_SELECT + " WHERE a.id = ANY($1::uuid[]) ORDER BY a.created_at", [r["id"] for r in ids])
        return [_row(r) for r in rows]

    async def get(self, request_id: str) -> AdminRequestRow | None:
        key = _uid(request_id)
        if key is None:
            return None
        async with self.db.connection("admin_request_get") as conn:
            row = await conn.fetchrow(_SELECT + " WHERE a.id = $1", key)
        return None if row is None else _row(row)

    @staticmethod
    async def lock(conn: Conn, request_id: str) -> tuple[AdminRequestRow, str | None, bool] | None:
        """Lock a request for its decision: the row, the pending password hash, and whether
        it has expired (pending past ``expires_at``)."""
        key = _uid(request_id)
        if key is None:
            return None
        locked = await conn.fetchrow(
            "SELECT password_hash, expires_at <= clock_timestamp() AS expired FROM admin_requests WHERE id = $1 FOR UPDATE", key
        )
        if locked is None:
            return None
        row = await conn.fetchrow(_SELECT + " WHERE a.id = $1", key)
        assert row is not None
        return _row(row), locked["password_hash"], bool(locked["expired"])

    @staticmethod
    async def decide(
        conn: Conn, request_id: str, status: str, decided_by: str | None, result_user_id: str | None = None
    ) -> AdminRequestRow:
        """Record the outcome of a locked pending request; the password hash is dropped."""
        await conn.execute(
            """UPDATE admin_requests SET status = $2, decided_by = $3, decided_at = clock_timestamp(),
                                         result_user_id = $4, password_hash = NULL
               WHERE id = $1 AND status = 'pending'""",
            uuid.UUID(request_id),
            status,
            None if decided_by is None else uuid.UUID(decided_by),
            None if result_user_id is None else uuid.UUID(result_user_id),
        )
        row = await conn.fetchrow(_SELECT + " WHERE a.id = $1", uuid.UUID(request_id))
        assert row is not None
        return _row(row)

    async def pending_page(
        self, *, subtree_of: str | None, requested_by: str, after: RequestKey | None, limit: int
    ) -> list[AdminRequestRow]:
        """Pending, unexpired requests, oldest first, after the sort key ``after``: for an org
        in the subtree of ``subtree_of`` (None: every org) or filed by ``requested_by``.
        Candidates only: the caller applies the policy to each."""
        after_at, after_id = after if after is not None else (None, None)
        async with self.db.connection("admin_requests_pending") as conn:
            rows = await conn.fetch(
                _SELECT
                + """ WHERE a.status = 'pending' AND a.expires_at > clock_timestamp()
                      AND ($1::uuid IS NULL OR a.requested_by = $2::uuid OR a.org_id IN (
                          WITH RECURSIVE down(id) AS (
                              SELECT id FROM orgs WHERE id = $1::uuid
                              UNION ALL SELECT o.id FROM orgs o JOIN down ON o.parent_id = down.id)
                          SELECT id FROM down))
                      AND ($3::timestamptz IS NULL OR (a.created_at, a.id) > ($3::timestamptz, $4::uuid))
                    ORDER BY a.created_at, a.id LIMIT $5""",
                None if subtree_of is None else uuid.UUID(subtree_of),
                uuid.UUID(requested_by),
                after_at,
                None if after_id is None else _uid(after_id),
                limit,
            )
        return [_row(r) for r in rows]
