"""Storage for bearer-token sessions and WebSocket tickets (``sessions``, ``ws_tickets``).

Only SHA-256 hashes of tokens and tickets are stored. A session is *active* while it
is neither expired nor revoked and its user is not disabled.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import msgspec

from ..models import Session, SessionInfo
from .db import Conn, Database
from .users import user_from_row

__all__ = ["SessionStore", "Refreshed"]


class Refreshed(msgspec.Struct, frozen=True):
    """What :meth:`SessionStore.refresh` did: ``outcome`` is ``"refreshed"`` (the new session's
    id and expiry are set), ``"inactive"`` or ``"deadline"`` (nothing changed)."""

    outcome: str
    session_id: str | None = None
    expires_at: dt.datetime | None = None
    deadline: dt.datetime | None = None


_ACTIVE_SESSION = """
    SELECT s.id AS session_id, s.expires_at, u.id, u.username, u.display_name, u.role, u.org_id, u.rm_id, u.disabled,
           u.segment, u.tags, u.widget_visitor, ARRAY(SELECT f.account_id::text FROM account_follows f WHERE f.user_id = u.id) AS follows,
           ARRAY(WITH RECURSIVE up(id, parent_id, depth) AS (
                     SELECT o.id, o.parent_id, 0 FROM orgs o WHERE o.id = u.org_id
                     UNION ALL SELECT o.id, o.parent_id, up.depth + 1 FROM orgs o JOIN up ON o.id = up.parent_id)
                 SELECT id::text FROM up ORDER BY depth) AS org_path
    FROM sessions s JOIN users u ON u.id = s.user_id
    WHERE {where} AND s.revoked_at IS NULL AND s.expires_at > now() AND NOT u.disabled
"""


def _session(row: Any) -> Session:
    return Session(
        id=str(row["session_id"]),
        user=user_from_row(row),
        expires_at=row["expires_at"],
        follows=tuple(row["follows"]),
        org_path=tuple(row["org_path"]),
    )


class SessionStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def create(
        self,
        user_id: str,
        token_hash: bytes,
        ttl: dt.timedelta,
        *,
        user_agent: str | None,
        ip: str | None,
        max_lifetime: dt.timedelta | None = None,
    ) -> tuple[str, dt.datetime]:
        """A session opened by a password sign-in (``signed_in_at`` = now); it expires after
        ``ttl``, or ``max_lifetime`` if that is shorter."""
        session_id = uuid.uuid4()
        async with self.db.connection("session_create") as conn:
            expires = await conn.fetchval(
                """INSERT INTO sessions (id, user_id, token_hash, expires_at, user_agent, ip, signed_in_at)
                   VALUES ($1, $2, $3, now() + LEAST($4::interval, COALESCE($7::interval, $4::interval)), $5, $6, now())
                   RETURNING expires_at""",
                session_id,
                uuid.UUID(user_id),
                token_hash,
                ttl,
                (user_agent or "")[:256] or None,
                ip,
                max_lifetime,
            )
        return str(session_id), expires

    @staticmethod
    async def refresh(
        conn: Conn,
        session_id: str,
        token_hash: bytes,
        ttl: dt.timedelta,
        max_lifetime: dt.timedelta,
        *,
        user_agent: str | None,
        ip: str | None,
    ) -> Refreshed:
        """Replace an active session by a new one, in the caller's transaction.

        The new session keeps the old one's ``signed_in_at`` and expires at
        ``min(now + ttl, signed_in_at + max_lifetime)``; the old one is revoked ("refreshed").
        Nothing changes when the old session is no longer active (``outcome="inactive"``: it was
        revoked, e.g. by a concurrent refresh of the same token, or expired), or when it cannot
        be extended because it already ends at its absolute deadline (``"deadline"``).
        """
        new_id = uuid.uuid4()
        row = await conn.fetchrow(
            """SELECT user_id, signed_in_at, signed_in_at + $2::interval AS deadline,
                      expires_at >= signed_in_at + $2::interval AS at_deadline
               FROM sessions WHERE id = $1 AND revoked_at IS NULL AND expires_at > now() FOR UPDATE""",
            uuid.UUID(session_id),
            max_lifetime,
        )
        if row is None:
            return Refreshed("inactive")
        if row["at_deadline"]:
            return Refreshed("deadline", deadline=row["deadline"])
        expires = await conn.fetchval(
            """INSERT INTO sessions (id, user_id, token_hash, expires_at, user_agent, ip, signed_in_at)
               VALUES ($1, $2, $3, LEAST(now() + $4::interval, $5::timestamptz + $6::interval), $7, $8, $5)
               RETURNING expires_at""",
            new_id,
            row["user_id"],
            token_hash,
            ttl,
            row["signed_in_at"],
            max_lifetime,
            (user_agent or "")[:256] or None,
            ip,
        )
        await conn.execute(
            "UPDATE sessions SET revoked_at = now(), revoked_reason = 'refreshed' WHERE id = $1", uuid.UUID(session_id)
        )
        return Refreshed("refreshed", session_id=str(new_id), expires_at=expires, deadline=row["deadline"])

    async def active_by_token(self, token_hash: bytes) -> Session | None:
        # reconnect storms: thousands of handshakes at once queue for the pool rather than fail
        async with self.db.connection("session_by_token", acquire_timeout=5.0) as conn:
            row = await conn.fetchrow(_ACTIVE_SESSION.format(where="s.token_hash = $1"), token_hash)
        return None if row is None else _session(row)

    @staticmethod
    async def revoke(conn: Conn, session_id: str, reason: str) -> bool:
        """Revoke one session (in the caller's transaction). False if it was not active."""
        status = await conn.execute(
            "UPDATE sessions SET revoked_at = now(), revoked_reason = $2 WHERE id = $1 AND revoked_at IS NULL",
            uuid.UUID(session_id),
            reason,
        )
        return bool(status.endswith(" 1"))

    @staticmethod
    async def revoke_all(conn: Conn, user_id: str, reason: str, *, except_session: str | None = None) -> list[str]:
        """Revoke every active session of a user but ``except_session`` (in the caller's
        transaction); returns the revoked ids."""
        rows = await conn.fetch(
            """UPDATE sessions SET revoked_at = now(), revoked_reason = $2
               WHERE user_id = $1 AND revoked_at IS NULL AND id IS DISTINCT FROM $3 RETURNING id""",
            uuid.UUID(user_id),
            reason,
            uuid.UUID(except_session) if except_session else None,
        )
        return [str(r["id"]) for r in rows]

    async def list_active(
        self, user_id: str, *, after: tuple[dt.datetime, uuid.UUID] | None = None, limit: int | None = None
    ) -> list[SessionInfo]:
        """The user's active sessions, newest first (``created_at``, then id, descending): all of
        them, or up to ``limit`` after the sort key ``after`` (keyset paging)."""
        async with self.db.connection("sessions_of_user") as conn:
            rows = await conn.fetch(
                """SELECT id, created_at, expires_at, user_agent, ip FROM sessions
                   WHERE user_id = $1 AND revoked_at IS NULL AND expires_at > now()
                     AND ($2::timestamptz IS NULL OR (created_at, id) < ($2, $3::uuid))
                   ORDER BY created_at DESC, id DESC LIMIT $4""",
                uuid.UUID(user_id),
                after[0] if after else None,
                after[1] if after else None,
                limit,
            )
        return [
            SessionInfo(id=str(r["id"]), created_at=r["created_at"], expires_at=r["expires_at"], user_agent=r["user_agent"], ip=r["ip"])
            for r in rows
        ]

    async def owner(self, session_id: str) -> str | None:
        try:
            key = uuid.UUID(session_id)
        except ValueError:
            return None
        async with self.db.connection("session_owner") as conn:
            owner = await conn.fetchval("SELECT user_id FROM sessions WHERE id = $1", key)
        return None if owner is None else str(owner)

    async def active_by_ids(self, session_ids: list[str]) -> dict[str, Session]:
        """The sessions among ``session_ids`` that are still active, as the token lookup would
        load them now (one query; the session cache's re-check compares them with its copies)."""
        if not session_ids:
            return {}
        async with self.db.connection("sessions_revalidate") as conn:
            rows = await conn.fetch(_ACTIVE_SESSION.format(where="s.id = ANY($1::uuid[])"), [uuid.UUID(i) for i in session_ids])
        return {str(r["session_id"]): _session(r) for r in rows}

    async def inactive_among(self, session_ids: list[str]) -> set[str]:
        """Which of these sessions are no longer valid (revoked, expired, or their user disabled)."""
        if not session_ids:
            return set()
        async with self.db.connection("sessions_recheck") as conn:
            rows = await conn.fetch(
                """SELECT s.id FROM sessions s JOIN users u ON u.id = s.user_id
                   WHERE s.id = ANY($1::uuid[]) AND (s.revoked_at IS NOT NULL OR s.expires_at <= now() OR u.disabled)""",
                [uuid.UUID(i) for i in session_ids],
            )
        return {str(r["id"]) for r in rows}

    async def create_ticket(self, session_id: str, ticket_hash: bytes, ttl: dt.timedelta) -> None:
        async with self.db.connection("ws_ticket_create") as conn:
            await conn.execute(
                "INSERT INTO ws_tickets (ticket_hash, session_id, expires_at) VALUES ($1, $2, now() + $3::interval)",
                ticket_hash,
                uuid.UUID(session_id),
                ttl,
            )
            # tickets live seconds: sweep expired ones as new ones are issued
            await conn.execute("DELETE FROM ws_tickets WHERE expires_at < now() - interval '1 minute'")

    async def consume_ticket(self, ticket_hash: bytes) -> Session | None:
        """Redeem a ticket once: the first caller gets the session, every later caller None."""
        async with self.db.transaction("ws_ticket_consume") as conn:
            session_id = await conn.fetchval(
                """UPDATE ws_tickets SET used_at = now()
                   WHERE ticket_hash = $1 AND used_at IS NULL AND expires_at > now()
                   RETURNING session_id""",
                ticket_hash,
            )
            if session_id is None:
                return None
            row = await conn.fetchrow(_ACTIVE_SESSION.format(where="s.id = $1"), session_id)
        return None if row is None else _session(row)
