"""The desk's sessions and the customer's service conversation (``service_sessions``,
``service_conversations``), and the hub's system user who speaks in them.

One open session per customer: :meth:`ServiceSessions.open_session` serialises a
customer's opens on an advisory lock. The session changes that move waiting lists and
agents' load are in :mod:`.routing`.
"""

from __future__ import annotations

import uuid

from ...desk.system import SYSTEM_DISPLAY_NAME, SYSTEM_USER_ID, SYSTEM_USERNAME
from ..db import Conn
from .rows import NO_SESSION, SESSION_COLS, ServiceError, SessionRow, StorePart, session_from_row, uid

__all__ = ["ServiceSessions"]

_BY_ID = f"SELECT {SESSION_COLS} FROM service_sessions WHERE id = $1"
_OPEN_OF = f"SELECT {SESSION_COLS} FROM service_sessions WHERE customer_id = $1 AND state <> 'closed'"


class ServiceSessions(StorePart):
    """Opening and reading sessions."""

    # --- the system user and the customer's service conversation ---------------------------

    async def ensure_system_user(self) -> str | None:
        """Create the hub's system user (disabled, unusable password) under the head office
        if it is missing. Returns the head office's org id, None if no org exists yet."""
        async with self.db.connection("service_system_user") as conn:
            row = await conn.fetchrow(
                """WITH ho AS (SELECT id FROM orgs WHERE parent_id IS NULL ORDER BY created_at LIMIT 1),
                        ins AS (INSERT INTO users (id, username, display_name, role, org_id, password_hash, disabled)
                                SELECT $1, $2, $3, 'staff', id, '!', true FROM ho
                                ON CONFLICT DO NOTHING RETURNING org_id)
                   SELECT COALESCE((SELECT org_id FROM ins), (SELECT org_id FROM users WHERE id = $1)) AS org_id""",
                uid(SYSTEM_USER_ID),
                SYSTEM_USERNAME,
                SYSTEM_DISPLAY_NAME,
            )
        return None if row is None or row["org_id"] is None else str(row["org_id"])

    @staticmethod
    async def _service_conversation(conn: Conn, customer_id: str) -> str:
        """The customer's service conversation, created on first use (call under the
        customer's advisory lock)."""
        found = await conn.fetchval("SELECT conversation_id FROM service_conversations WHERE customer_id = $1", uid(customer_id))
        if found is not None:
            return str(found)
        conv = uuid.uuid4()
        await conn.execute(
            "INSERT INTO conversations (id, kind, title, created_by) VALUES ($1, 'service', 'Customer service', $2)",
            conv,
            uid(customer_id),
        )
        await conn.execute(
            "INSERT INTO conversation_members (conversation_id, user_id, role) VALUES ($1, $2, 'owner')", conv, uid(customer_id)
        )
        await conn.execute(
            "INSERT INTO service_conversations (customer_id, conversation_id) VALUES ($1, $2)", uid(customer_id), conv
        )
        return str(conv)

    # --- sessions ------------------------------------------------------------------------------

    async def open_session(self, customer_id: str, queue: str, start_seq: int | None = None) -> tuple[SessionRow, bool]:
        """The customer's open session, or a new one in ``queue`` (state ``bot``). Returns
        ``(session, created)``. One open session per customer, even under concurrent calls.
        ``start_seq``: where the session's messages begin (default: after the last one)."""
        async with self.db.transaction("service_open") as conn:
            # serialises one customer's opens (and the creation of their conversation)
            await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended('bankhub.service:' || $1::text, 0))", customer_id)
            existing = await conn.fetchrow(_OPEN_OF, uid(customer_id))
            if existing is not None:
                return session_from_row(existing), False
            if not await conn.fetchval("SELECT 1 FROM service_queues WHERE code = $1", queue):
                raise ServiceError("not_found", f"no service queue {queue!r}")
            conv = await self._service_conversation(conn, customer_id)
            row = await conn.fetchrow(
                f"""INSERT INTO service_sessions (id, conversation_id, customer_id, queue, state, start_seq)
                    SELECT $1, $2, $3, $4, 'bot', LEAST(last_seq, COALESCE($5, last_seq)) FROM conversations WHERE id = $2
                    RETURNING {SESSION_COLS}""",
                uuid.uuid4(),
                uid(conv),
                uid(customer_id),
                queue,
                start_seq,
            )
        return session_from_row(row), True

    async def session(self, session_id: str) -> SessionRow | None:
        try:
            key = uid(session_id)
        except ValueError:
            return None
        async with self.db.connection("service_session") as conn:
            row = await conn.fetchrow(_BY_ID, key)
        return None if row is None else session_from_row(row)

    async def _existing(self, session_id: str) -> SessionRow:
        """:meth:`session`, refusing (``not_found``) one that does not exist."""
        current = await self.session(session_id)
        if current is None:
            raise ServiceError("not_found", NO_SESSION)
        return current

    @staticmethod
    async def _reread(conn: Conn, session_id: str) -> SessionRow:
        """The session as the open transaction ``conn`` sees it now."""
        return session_from_row(await conn.fetchrow(_BY_ID, uid(session_id)))

    async def open_session_of(self, customer_id: str) -> SessionRow | None:
        async with self.db.connection("service_open_session_of") as conn:
            row = await conn.fetchrow(_OPEN_OF, uid(customer_id))
        return None if row is None else session_from_row(row)

    async def session_in(self, conversation_id: str) -> tuple[str, SessionRow | None] | None:
        """For a service conversation: ``(customer_id, open session or None)``; None if the
        conversation is not a service conversation."""
        async with self.db.connection("service_session_in") as conn:
            row = await conn.fetchrow(
                f"""SELECT sc.customer_id AS owner, s.* FROM service_conversations sc
                    LEFT JOIN LATERAL (SELECT {SESSION_COLS} FROM service_sessions
                                       WHERE customer_id = sc.customer_id AND state <> 'closed') s ON true
                    WHERE sc.conversation_id = $1""",
                uid(conversation_id),
            )
        if row is None:
            return None
        return str(row["owner"]), (session_from_row(row) if row["id"] is not None else None)

    async def active_sessions_of(self, agent_id: str) -> list[SessionRow]:
        async with self.db.connection("service_agent_sessions") as conn:
            rows = await conn.fetch(
                f"SELECT {SESSION_COLS} FROM service_sessions WHERE agent_id = $1 AND state = 'active' ORDER BY assigned_at",
                uid(agent_id),
            )
        return [session_from_row(r) for r in rows]

    async def serving(self, agent_id: str, customer_id: str) -> bool:
        """Whether the agent is serving the customer right now (a policy fact)."""
        async with self.db.connection("service_serving") as conn:
            return bool(
                await conn.fetchval(
                    "SELECT 1 FROM service_sessions WHERE agent_id = $1 AND customer_id = $2 AND state = 'active'",
                    uid(agent_id),
                    uid(customer_id),
                )
            )
