"""Storage for the service desk: queues, agents, sessions, routing and figures
(``service_*`` tables, the customer's ``service`` conversation).

Routing is decided in Postgres transactions so that it holds with any number of nodes.
Every transaction that touches more than one of them takes its locks in one order —
**queue rows (by code) → agent rows (by id) → session rows** — so they cannot deadlock
each other:

* a queue's row lock serialises everything that changes its waiting list (a customer
  joining, routing, leaving, a transfer in), so tickets are handed out in lock order and
  routing sees every waiting customer who joined before it (FIFO; nobody skipped);
* the agents' row locks make their load exact: an agent serving several queues is never
  given more than their capacity by two queues routed at once (a CHECK backs this up);
* :func:`bankhub.desk.routing.plan` decides, on the locked rows, who gets whom.

Row locks are ``FOR NO KEY UPDATE``: they exclude each other, but not the foreign-key
checks of inserts that reference the locked rows (a session naming its queue, an
assignment naming its agent), which would otherwise wait across transactions.

Transactions that free an agent's capacity (close, transfer) commit first; routing the
agent's queues follows in transactions of their own (and every node sweeps the queues
periodically), so freed capacity is always used.

Times of queueing, assignment and close are ``clock_timestamp()``: when the change was
made, not when its transaction began (a routing transaction may have waited for the lock
a close held), so a stint's start is never before the end of the one that freed it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import uuid
from collections.abc import Sequence
from typing import Any

import asyncpg
import msgspec

from ..crypto.keyring import DataKey, Keyring
from ..desk.hours import BusinessHours
from ..desk.routing import AgentLoad, Assignment, plan
from ..desk.sealing import CSAT_COMMENT, DESK_TEXT_KEY_ID, NOTE_TEXT, SHREDDED, UNDECRYPTABLE, TextUnreadable, open_text, seal_text
from ..desk.system import SYSTEM_DISPLAY_NAME, SYSTEM_USER_ID, SYSTEM_USERNAME
from ..protocol.frames import ServiceNote
from .db import Conn, Database
from .keys import ConversationKeyStore, KeyUnavailable

__all__ = [
    "ServiceStore",
    "ServiceError",
    "QueueRow",
    "AgentRow",
    "SessionRow",
    "WaitingEntry",
    "QueueSnapshot",
    "RouteOutcome",
    "Change",
    "QueueFigures",
    "AgentFigures",
    "DeskText",
    "DEFAULT_HANDLE_SECONDS",
    "is_retryable",
]

log = logging.getLogger("bankhub.storage.service")

DEFAULT_HANDLE_SECONDS = 300.0
"""The handle time estimates assume for a queue with no finished conversations yet."""
_HANDLE_SAMPLE = 50  # the last finished conversations the estimate averages over


class ServiceError(Exception):
    """An expected refusal found inside a transaction (``code``: not_found, conflict, ...)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class QueueRow(msgspec.Struct):
    code: str
    name: str
    timezone: str
    days: list[int]
    open_minute: int
    close_minute: int
    out_of_hours_text: str
    revision: int

    @property
    def hours(self) -> BusinessHours:
        return BusinessHours(self.timezone, tuple(self.days), self.open_minute, self.close_minute)


class AgentRow(msgspec.Struct):
    user_id: str
    username: str
    display_name: str
    state: str
    capacity: int
    active: int
    queues: list[str]
    last_assigned_at: dt.datetime | None = None


class SessionRow(msgspec.Struct):
    id: str
    conversation_id: str
    customer_id: str
    queue: str
    state: str
    ticket: int | None
    priority: int
    agent_id: str | None
    start_seq: int
    opened_at: dt.datetime
    queued_at: dt.datetime | None
    assigned_at: dt.datetime | None
    closed_at: dt.datetime | None
    closed_by: str | None
    tags: list[str]
    csat: int | None


class DeskText(msgspec.Struct, frozen=True):
    """A sealed desk text as read: ``text``, or None with ``unreadable`` saying why
    (``shredded``: the conversation was erased; ``undecryptable``: the stored bytes failed
    their integrity check). Both None: there is no text."""

    text: str | None = None
    unreadable: str | None = None


class WaitingEntry(msgspec.Struct):
    session_id: str
    customer_id: str
    conversation_id: str
    position: int


class QueueSnapshot(msgspec.Struct):
    """A queue's waiting list right after a change, with what estimates need."""

    queue: str
    revision: int
    waiting: list[WaitingEntry]
    slots: int  # conversations the queue's available agents serve at once
    avg_handle_seconds: float


class RouteOutcome(msgspec.Struct):
    """What one routing transaction did: sessions it assigned (now ``active``) and the queue afterwards."""

    assigned: list[SessionRow]
    snapshot: QueueSnapshot | None


class Change(msgspec.Struct):
    """A session changed by a close, transfer or cancel: the session afterwards, the agent
    who lost it (None if none), queues whose waiting lists moved, what routing did."""

    session: SessionRow
    released_agent: str | None = None
    routed: RouteOutcome | None = None


class QueueFigures(msgspec.Struct):
    queue: str
    name: str
    waiting: int
    longest_wait_s: float | None
    avg_wait_s: float | None
    avg_handle_s: float | None
    handled: int
    csat_avg: float | None
    csat_count: int


class AgentFigures(msgspec.Struct):
    user_id: str
    username: str
    display_name: str
    state: str
    capacity: int
    active: int
    queues: list[str]
    handled: int
    avg_handle_s: float | None
    csat_avg: float | None
    csat_count: int


_SESSION_COLS = """id, conversation_id, customer_id, queue, state, ticket, priority, agent_id, start_seq, opened_at,
                   queued_at, assigned_at, closed_at, closed_by, tags, csat"""


def _sid(value: Any) -> str | None:
    return None if value is None else str(value)


def session_from_row(r: Any) -> SessionRow:
    return SessionRow(
        id=str(r["id"]),
        conversation_id=str(r["conversation_id"]),
        customer_id=str(r["customer_id"]),
        queue=r["queue"],
        state=r["state"],
        ticket=r["ticket"],
        priority=r["priority"],
        agent_id=_sid(r["agent_id"]),
        start_seq=r["start_seq"],
        opened_at=r["opened_at"],
        queued_at=r["queued_at"],
        assigned_at=r["assigned_at"],
        closed_at=r["closed_at"],
        closed_by=_sid(r["closed_by"]),
        tags=list(r["tags"]),
        csat=r["csat"],
    )


def _queue(r: Any) -> QueueRow:
    return QueueRow(
        code=r["code"],
        name=r["name"],
        timezone=r["timezone"],
        days=list(r["days"]),
        open_minute=r["open_minute"],
        close_minute=r["close_minute"],
        out_of_hours_text=r["out_of_hours_text"],
        revision=r["revision"],
    )


def _uid(value: str) -> uuid.UUID:
    return uuid.UUID(value)


class _Locked(msgspec.Struct):
    load: AgentLoad
    skilled: bool


class ServiceStore:
    """The desk's storage. ``keyring`` seals and opens the desk's free text (notes, CSAT
    comments; :mod:`bankhub.desk.sealing`); without one (seeding tools that never touch
    texts) writing or reading a text raises ``RuntimeError``."""

    def __init__(self, db: Database, keyring: Keyring | None = None) -> None:
        self.db = db
        self.keyring = keyring

    # --- sealed texts: the conversation's data key --------------------------------------------

    def _keyring(self) -> Keyring:
        if self.keyring is None:
            raise RuntimeError("this ServiceStore has no keyring: it cannot seal or open desk texts")
        return self.keyring

    async def text_key(self, conversation_id: str) -> DataKey | None:
        """The data key this conversation's desk texts are sealed under; None if the
        conversation was shredded. A conversation without a key yet gets one here, as with
        its first message (INSERT ... ON CONFLICT DO NOTHING, then read back: a key stored
        meanwhile wins). Raises :class:`KeyUnavailable` when the key provider fails.

        Read outside the desk's transactions (an HSM call never runs under their locks): a
        shred committed after this read leaves the text sealed under the destroyed key,
        unrecoverable like every message of the conversation — never readable.
        """
        keyring = self._keyring()
        cid = str(_uid(conversation_id))
        async with self.db.connection("service_text_key") as conn:  # autocommit: no lock is held
            found = await ConversationKeyStore.data_keys(conn, keyring, [cid])
        if cid in found.failed:
            raise KeyUnavailable("the conversation's data key is unavailable")
        return found.keys.get(cid)  # None: shredded

    async def _sealing_key(self, conversation_id: str) -> DataKey:
        """:meth:`text_key`, refusing (``gone``) a conversation that was shredded."""
        key = await self.text_key(conversation_id)
        if key is None:
            raise ServiceError("gone", "this conversation was erased: no text can be stored with it any more")
        return key

    async def _read_keys(self, rows: Sequence[Any], sealed_column: str) -> dict[tuple[str, bytes], DataKey]:
        """The unwrapped keys of the rows that hold a sealed text (``unavailable`` if the provider fails)."""
        return await ConversationKeyStore.unwrap_rows(self._keyring(), rows, present=sealed_column)

    @staticmethod
    def _open(
        r: Any, keys: dict[tuple[str, bytes], DataKey], field: str, row_id: str, prefix: str, *, always: bool
    ) -> DeskText:
        """Read column ``prefix`` of row ``r`` (with ``<prefix>_sealed``, ``<prefix>_key_id``
        and the conversation's key columns). ``always``: the row always had a text (a note),
        so one with none left was cleared by a shred."""
        conv = str(r["conversation_id"])
        sealed, plain = r[f"{prefix}_sealed"], r[prefix]
        if r["shredded_at"] is not None:
            return DeskText(unreadable=SHREDDED) if (always or sealed is not None or plain is not None) else DeskText()
        if sealed is None:
            # written before texts were sealed (delta 0010); sealed by the next start-up
            return DeskText(text=plain) if (plain is not None or not always) else DeskText(unreadable=UNDECRYPTABLE)
        wrapped = r["wrapped_dek"]
        key = keys.get((r["kek_id"], wrapped)) if wrapped is not None else None
        try:
            if key is None:
                raise TextUnreadable("the conversation has no data key")
            return DeskText(text=open_text(key, field, conv, row_id, sealed, r[f"{prefix}_key_id"]))
        except TextUnreadable as exc:
            log.warning("%s of row %s (conversation %s) is undecryptable: %s", field, row_id, conv, exc)
            return DeskText(unreadable=UNDECRYPTABLE)

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
                _uid(SYSTEM_USER_ID),
                SYSTEM_USERNAME,
                SYSTEM_DISPLAY_NAME,
            )
        return None if row is None or row["org_id"] is None else str(row["org_id"])

    @staticmethod
    async def _service_conversation(conn: Conn, customer_id: str) -> str:
        """The customer's service conversation, created on first use (call under the
        customer's advisory lock)."""
        found = await conn.fetchval("SELECT conversation_id FROM service_conversations WHERE customer_id = $1", _uid(customer_id))
        if found is not None:
            return str(found)
        conv = uuid.uuid4()
        await conn.execute(
            "INSERT INTO conversations (id, kind, title, created_by) VALUES ($1, 'service', 'Customer service', $2)",
            conv,
            _uid(customer_id),
        )
        await conn.execute(
            "INSERT INTO conversation_members (conversation_id, user_id, role) VALUES ($1, $2, 'owner')", conv, _uid(customer_id)
        )
        await conn.execute(
            "INSERT INTO service_conversations (customer_id, conversation_id) VALUES ($1, $2)", _uid(customer_id), conv
        )
        return str(conv)

    async def open_session(self, customer_id: str, queue: str, start_seq: int | None = None) -> tuple[SessionRow, bool]:
        """The customer's open session, or a new one in ``queue`` (state ``bot``). Returns
        ``(session, created)``. One open session per customer, even under concurrent calls.
        ``start_seq``: where the session's messages begin (default: after the last one)."""
        async with self.db.transaction("service_open") as conn:
            # serialises one customer's opens (and the creation of their conversation)
            await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended('bankhub.service:' || $1::text, 0))", customer_id)
            existing = await conn.fetchrow(
                f"SELECT {_SESSION_COLS} FROM service_sessions WHERE customer_id = $1 AND state <> 'closed'", _uid(customer_id)
            )
            if existing is not None:
                return session_from_row(existing), False
            if not await conn.fetchval("SELECT 1 FROM service_queues WHERE code = $1", queue):
                raise ServiceError("not_found", f"no service queue {queue!r}")
            conv = await self._service_conversation(conn, customer_id)
            row = await conn.fetchrow(
                f"""INSERT INTO service_sessions (id, conversation_id, customer_id, queue, state, start_seq)
                    SELECT $1, $2, $3, $4, 'bot', LEAST(last_seq, COALESCE($5, last_seq)) FROM conversations WHERE id = $2
                    RETURNING {_SESSION_COLS}""",
                uuid.uuid4(),
                _uid(conv),
                _uid(customer_id),
                queue,
                start_seq,
            )
        return session_from_row(row), True

    async def session(self, session_id: str) -> SessionRow | None:
        try:
            sid = _uid(session_id)
        except ValueError:
            return None
        async with self.db.connection("service_session") as conn:
            row = await conn.fetchrow(f"SELECT {_SESSION_COLS} FROM service_sessions WHERE id = $1", sid)
        return None if row is None else session_from_row(row)

    async def open_session_of(self, customer_id: str) -> SessionRow | None:
        async with self.db.connection("service_open_session_of") as conn:
            row = await conn.fetchrow(
                f"SELECT {_SESSION_COLS} FROM service_sessions WHERE customer_id = $1 AND state <> 'closed'", _uid(customer_id)
            )
        return None if row is None else session_from_row(row)

    async def session_in(self, conversation_id: str) -> tuple[str, SessionRow | None] | None:
        """For a service conversation: ``(customer_id, open session or None)``; None if the
        conversation is not a service conversation."""
        async with self.db.connection("service_session_in") as conn:
            row = await conn.fetchrow(
                f"""SELECT sc.customer_id AS owner, s.* FROM service_conversations sc
                    LEFT JOIN LATERAL (SELECT {_SESSION_COLS} FROM service_sessions
                                       WHERE customer_id = sc.customer_id AND state <> 'closed') s ON true
                    WHERE sc.conversation_id = $1""",
                _uid(conversation_id),
            )
        if row is None:
            return None
        return str(row["owner"]), (session_from_row(row) if row["id"] is not None else None)

    async def active_sessions_of(self, agent_id: str) -> list[SessionRow]:
        async with self.db.connection("service_agent_sessions") as conn:
            rows = await conn.fetch(
                f"SELECT {_SESSION_COLS} FROM service_sessions WHERE agent_id = $1 AND state = 'active' ORDER BY assigned_at",
                _uid(agent_id),
            )
        return [session_from_row(r) for r in rows]

    async def serving(self, agent_id: str, customer_id: str) -> bool:
        """Whether the agent is serving the customer right now (a policy fact)."""
        async with self.db.connection("service_serving") as conn:
            return bool(
                await conn.fetchval(
                    "SELECT 1 FROM service_sessions WHERE agent_id = $1 AND customer_id = $2 AND state = 'active'",
                    _uid(agent_id),
                    _uid(customer_id),
                )
            )

    async def notes(self, session_id: str) -> list[ServiceNote]:
        """The session's notes, oldest first, their texts opened. In a shredded conversation
        a note keeps its place (author, kind, time, target) with an empty ``text`` and
        ``unreadable: "shredded"``; one that fails its integrity check, ``"undecryptable"``."""
        async with self.db.connection("service_notes") as conn:
            # the conversation's current wrapped key with the rows, as message reads do
            rows = await conn.fetch(
                """SELECT n.id, n.author_id, n.kind, n.text, n.text_sealed, n.text_key_id, n.to_queue, n.to_agent, n.created_at,
                          s.conversation_id, k.kek_id, k.wrapped_dek, k.shredded_at
                   FROM service_notes n
                   JOIN service_sessions s ON s.id = n.session_id
                   LEFT JOIN conversation_keys k ON k.conversation_id = s.conversation_id
                   WHERE n.session_id = $1 ORDER BY n.created_at, n.id""",
                _uid(session_id),
            )
        keys = await self._read_keys(rows, "text_sealed")
        out = []
        for r in rows:
            opened = self._open(r, keys, NOTE_TEXT, str(r["id"]), "text", always=True)
            out.append(
                ServiceNote(
                    author_id=str(r["author_id"]),
                    kind=r["kind"],
                    text=opened.text or "",
                    ts=int(r["created_at"].timestamp() * 1000),
                    to_queue=r["to_queue"],
                    to_agent_id=_sid(r["to_agent"]),
                    unreadable=opened.unreadable,
                )
            )
        return out

    async def csat_comment(self, session_id: str) -> DeskText:
        """The customer's CSAT comment on the session, opened (see :class:`DeskText`)."""
        async with self.db.connection("service_csat_comment") as conn:
            rows = await conn.fetch(
                """SELECT s.id, s.conversation_id, s.csat_comment, s.csat_comment_sealed, s.csat_comment_key_id,
                          k.kek_id, k.wrapped_dek, k.shredded_at
                   FROM service_sessions s LEFT JOIN conversation_keys k ON k.conversation_id = s.conversation_id
                   WHERE s.id = $1""",
                _uid(session_id),
            )
        if not rows:
            return DeskText()
        keys = await self._read_keys(rows, "csat_comment_sealed")
        return self._open(rows[0], keys, CSAT_COMMENT, str(rows[0]["id"]), "csat_comment", always=False)

    async def waiting_position(self, session: SessionRow) -> tuple[int, int, QueueSnapshot] | None:
        """For a waiting session: ``(position, waiting in all, estimate inputs)``; None if it
        is not waiting (any more)."""
        async with self.db.connection("service_position") as conn:
            row = await conn.fetchrow(
                """WITH w AS (SELECT id, row_number() OVER (ORDER BY priority DESC, ticket) AS position, count(*) OVER () AS total
                              FROM service_sessions WHERE queue = $1 AND state = 'waiting')
                   SELECT w.position, w.total, q.revision,
                          (SELECT COALESCE(sum(a.capacity), 0) FROM service_agents a
                             JOIN service_agent_queues s ON s.user_id = a.user_id AND s.queue = $1
                             JOIN users u ON u.id = a.user_id
                             WHERE a.state = 'available' AND NOT u.disabled AND u.role = 'agent') AS slots,
                          (SELECT avg(extract(epoch FROM ended_at - assigned_at)) FROM (
                             SELECT ended_at, assigned_at FROM service_assignments
                             WHERE queue = $1 AND ended_at IS NOT NULL ORDER BY ended_at DESC LIMIT $3) t) AS handle
                   FROM w JOIN service_queues q ON q.code = $1 WHERE w.id = $2""",
                session.queue,
                _uid(session.id),
                _HANDLE_SAMPLE,
            )
        if row is None:
            return None
        handle = row["handle"]
        snapshot = QueueSnapshot(
            queue=session.queue,
            revision=row["revision"],
            waiting=[],
            slots=int(row["slots"]),
            avg_handle_seconds=float(handle) if handle is not None and handle > 0 else DEFAULT_HANDLE_SECONDS,
        )
        return int(row["position"]), int(row["total"]), snapshot

    # --- queues, tags and agents ----------------------------------------------------------

    async def queues(self, *, after: str | None = None, limit: int | None = None) -> list[QueueRow]:
        """The queues by code: all, or up to ``limit`` with a code after ``after`` (keyset paging)."""
        async with self.db.connection("service_queues") as conn:
            rows = await conn.fetch(
                "SELECT * FROM service_queues WHERE $1::text IS NULL OR code > $1 ORDER BY code LIMIT $2", after, limit
            )
        return [_queue(r) for r in rows]

    async def queue(self, code: str) -> QueueRow | None:
        async with self.db.connection("service_queue") as conn:
            row = await conn.fetchrow("SELECT * FROM service_queues WHERE code = $1", code)
        return None if row is None else _queue(row)

    async def put_queue(
        self, code: str, name: str, hours: BusinessHours, out_of_hours_text: str, conn: Conn | None = None
    ) -> QueueRow:
        """Create or reconfigure a queue (its tickets and revision carry on)."""
        sql = """INSERT INTO service_queues (code, name, timezone, days, open_minute, close_minute, out_of_hours_text)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)
                 ON CONFLICT (code) DO UPDATE SET name = EXCLUDED.name, timezone = EXCLUDED.timezone, days = EXCLUDED.days,
                     open_minute = EXCLUDED.open_minute, close_minute = EXCLUDED.close_minute,
                     out_of_hours_text = EXCLUDED.out_of_hours_text
                 RETURNING *"""
        args = (code, name, hours.timezone, sorted(set(hours.days)), hours.open_minute, hours.close_minute, out_of_hours_text)
        if conn is not None:
            return _queue(await conn.fetchrow(sql, *args))
        async with self.db.connection("service_put_queue") as c:
            return _queue(await c.fetchrow(sql, *args))

    async def tags(self) -> dict[str, str]:
        async with self.db.connection("service_tags") as conn:
            rows = await conn.fetch("SELECT tag, label FROM service_tags ORDER BY tag")
        return {r["tag"]: r["label"] for r in rows}

    async def agent(self, user_id: str) -> AgentRow | None:
        agents = await self.agents([user_id])
        return agents[0] if agents else None

    async def agents(self, user_ids: Sequence[str] | None = None) -> list[AgentRow]:
        """Desk agents (all, or those of ``user_ids``) with their queues."""
        async with self.db.connection("service_agents") as conn:
            rows = await conn.fetch(
                """SELECT a.*, u.username, u.display_name,
                          ARRAY(SELECT queue FROM service_agent_queues q WHERE q.user_id = a.user_id ORDER BY queue) AS queues
                   FROM service_agents a JOIN users u ON u.id = a.user_id
                   WHERE $1::uuid[] IS NULL OR a.user_id = ANY($1::uuid[])
                   ORDER BY u.username""",
                None if user_ids is None else [_uid(u) for u in user_ids],
            )
        return [
            AgentRow(
                user_id=str(r["user_id"]),
                username=r["username"],
                display_name=r["display_name"],
                state=r["state"],
                capacity=r["capacity"],
                active=r["active"],
                queues=list(r["queues"]),
                last_assigned_at=r["last_assigned_at"],
            )
            for r in rows
        ]

    async def put_agent(self, user_id: str, capacity: int | None, queues: Sequence[str] | None, conn: Conn | None = None) -> None:
        """Put a user on the desk (or reconfigure them): capacity and the queues they serve.
        Lowering the capacity under the current load is refused (``conflict``)."""
        if conn is None:
            async with self.db.transaction("service_put_agent") as c:
                return await self.put_agent(user_id, capacity, queues, c)
        uid = _uid(user_id)
        await conn.execute("INSERT INTO service_agents (user_id) VALUES ($1) ON CONFLICT DO NOTHING", uid)
        active = await conn.fetchval("SELECT active FROM service_agents WHERE user_id = $1 FOR NO KEY UPDATE", uid)
        if capacity is not None:
            if capacity < active:
                raise ServiceError("conflict", f"the agent has {active} conversations now: finish some before lowering the capacity")
            await conn.execute("UPDATE service_agents SET capacity = $2 WHERE user_id = $1", uid, capacity)
        if queues is not None:
            known = {r["code"] for r in await conn.fetch("SELECT code FROM service_queues WHERE code = ANY($1::text[])", list(queues))}
            if missing := sorted(set(queues) - known):
                raise ServiceError("invalid_request", f"no such queue: {', '.join(missing)}")
            await conn.execute("DELETE FROM service_agent_queues WHERE user_id = $1", uid)
            await conn.executemany(
                "INSERT INTO service_agent_queues (user_id, queue) VALUES ($1, $2)", [(uid, q) for q in sorted(set(queues))]
            )

    async def set_agent_state(self, user_id: str, state: str) -> AgentRow | None:
        async with self.db.connection("service_agent_state") as conn:
            done = await conn.fetchval(
                """UPDATE service_agents SET state = $2, state_since = CASE WHEN state <> $2 THEN now() ELSE state_since END
                   WHERE user_id = $1 RETURNING 1""",
                _uid(user_id),
                state,
            )
        return await self.agent(user_id) if done else None

    async def queues_by_oldest_wait(self, queues: Sequence[str]) -> list[str]:
        """Of ``queues``, those with customers waiting, the longest-waiting head first (when an
        agent serving several queues frees up, the customer who waited longest goes first)."""
        async with self.db.connection("service_queue_heads") as conn:
            rows = await conn.fetch(
                """SELECT queue FROM service_sessions WHERE state = 'waiting' AND queue = ANY($1::text[])
                   GROUP BY queue ORDER BY max(priority) DESC, min(queued_at)""",
                list(queues),
            )
        return [r["queue"] for r in rows]

    async def waiting_in(self, queues: Sequence[str]) -> dict[str, tuple[int, float]]:
        """Of ``queues``, those with customers waiting now: ``queue -> (waiting, longest
        wait in seconds)`` (an agent's view of their queues; no customer is named)."""
        async with self.db.connection("service_queue_waiting_counts") as conn:
            rows = await conn.fetch(
                """SELECT queue, count(*) AS waiting, extract(epoch FROM clock_timestamp() - min(queued_at)) AS longest
                   FROM service_sessions WHERE state = 'waiting' AND queue = ANY($1::text[]) GROUP BY queue""",
                list(queues),
            )
        return {r["queue"]: (int(r["waiting"]), max(0.0, float(r["longest"] or 0))) for r in rows}

    async def queues_with_waiting(self) -> list[str]:
        async with self.db.connection("service_queues_waiting") as conn:
            rows = await conn.fetch("SELECT DISTINCT queue FROM service_sessions WHERE state = 'waiting' ORDER BY queue")
        return [r["queue"] for r in rows]

    # --- routing (inside transactions; lock order: queue -> agents -> sessions) --------------

    @staticmethod
    async def _lock_queue(conn: Conn, code: str) -> QueueRow:
        row = await conn.fetchrow("SELECT * FROM service_queues WHERE code = $1 FOR NO KEY UPDATE", code)
        if row is None:
            raise ServiceError("not_found", f"no service queue {code!r}")
        return _queue(row)

    @staticmethod
    async def _lock_agents(conn: Conn, queue: str | None, extra: Sequence[str]) -> dict[str, _Locked]:
        """Lock (in id order) the agents serving ``queue`` and those in ``extra``."""
        rows = await conn.fetch(
            """SELECT a.user_id, a.state, a.capacity, a.active, a.last_assigned_at, u.disabled OR u.role <> 'agent' AS off_desk,
                      EXISTS (SELECT 1 FROM service_agent_queues q WHERE q.user_id = a.user_id AND q.queue = $1) AS skilled
               FROM service_agents a JOIN users u ON u.id = a.user_id
               WHERE a.user_id IN (SELECT user_id FROM service_agent_queues WHERE queue = $1) OR a.user_id = ANY($2::uuid[])
               ORDER BY a.user_id FOR NO KEY UPDATE OF a""",
            queue,
            [_uid(e) for e in extra],
        )
        return {
            str(r["user_id"]): _Locked(
                AgentLoad(
                    user_id=str(r["user_id"]),
                    state="away" if r["off_desk"] else r["state"],  # a disabled account, or no longer an agent: nobody
                    capacity=r["capacity"],
                    active=r["active"],
                    last_assigned=None if r["last_assigned_at"] is None else r["last_assigned_at"].timestamp(),
                ),
                bool(r["skilled"]),
            )
            for r in rows
        }

    @staticmethod
    async def _lock_session(conn: Conn, session_id: str) -> SessionRow:
        row = await conn.fetchrow(f"SELECT {_SESSION_COLS} FROM service_sessions WHERE id = $1 FOR NO KEY UPDATE", _uid(session_id))
        if row is None:
            raise ServiceError("not_found", "no such service session")
        return session_from_row(row)

    @staticmethod
    async def _next_ticket(conn: Conn, queue: str) -> int:
        return int(await conn.fetchval("UPDATE service_queues SET last_ticket = last_ticket + 1 WHERE code = $1 RETURNING last_ticket", queue))

    async def _route_locked(self, conn: Conn, queue: str, agents: dict[str, _Locked], changed: bool) -> RouteOutcome:
        """Assign waiting customers of ``queue`` (its row and ``agents`` are locked)."""
        skilled = [a.load for a in agents.values() if a.skilled]
        free = sum(max(0, a.capacity - a.active) for a in skilled if a.state == "available")
        assigned: list[SessionRow] = []
        if free:
            rows = await conn.fetch(
                f"""SELECT {_SESSION_COLS} FROM service_sessions WHERE queue = $1 AND state = 'waiting'
                    ORDER BY priority DESC, ticket LIMIT $2 FOR NO KEY UPDATE""",
                queue,
                free,
            )
            waiting = [session_from_row(r) for r in rows]
            avoid = {s.id: s.agent_id for s in waiting if s.agent_id is not None}  # transferred away from them
            decided = plan(skilled, [s.id for s in waiting], avoid=avoid)
            if decided:
                assigned = await self._apply(conn, queue, {s.id: s for s in waiting}, decided)
        if not assigned and not changed:
            return RouteOutcome(assigned=[], snapshot=None)
        return RouteOutcome(assigned=assigned, snapshot=await self._snapshot(conn, queue, agents))

    @staticmethod
    async def _apply(conn: Conn, queue: str, sessions: dict[str, SessionRow], decided: Sequence[Assignment]) -> list[SessionRow]:
        sids = [_uid(a.session_id) for a in decided]
        aids = [_uid(a.agent_id) for a in decided]
        ticks = list(range(len(decided)))
        # one statement per table; ``tick`` keeps the assignment order in last_assigned_at
        rows = await conn.fetch(
            f"""UPDATE service_sessions s SET state = 'active', agent_id = v.agent, ticket = NULL, assigned_at = clock_timestamp()
                FROM unnest($1::uuid[], $2::uuid[]) AS v(id, agent) WHERE s.id = v.id
                RETURNING {", ".join("s." + c.strip() for c in _SESSION_COLS.split(","))}""",
            sids,
            aids,
        )
        await conn.execute(
            """UPDATE service_agents a SET active = a.active + v.n, last_assigned_at = clock_timestamp() + v.tick * interval '1 microsecond'
               FROM (SELECT agent, count(*) AS n, max(tick) AS tick FROM unnest($1::uuid[], $2::int[]) AS t(agent, tick)
                     GROUP BY agent) AS v
               WHERE a.user_id = v.agent""",
            aids,
            ticks,
        )
        await conn.execute(
            """INSERT INTO service_assignments (session_id, agent_id, queue, via, ticket, queued_at, assigned_at)
               SELECT v.id, v.agent, $3, 'queue', v.ticket, v.queued_at, clock_timestamp()
               FROM unnest($1::uuid[], $2::uuid[], $4::bigint[], $5::timestamptz[], $6::int[]) AS v(id, agent, ticket, queued_at, tick)
               ORDER BY v.tick""",
            sids,
            aids,
            queue,
            [sessions[a.session_id].ticket for a in decided],
            [sessions[a.session_id].queued_at for a in decided],
            ticks,
        )
        # the agent joins the conversation; the session's messages (bot exchange included) are unread
        await conn.execute(
            """INSERT INTO conversation_members (conversation_id, user_id, role, read_seq)
               SELECT s.conversation_id, v.agent, 'member', s.start_seq
               FROM unnest($1::uuid[], $2::uuid[]) AS v(id, agent) JOIN service_sessions s ON s.id = v.id
               ON CONFLICT (conversation_id, user_id) DO UPDATE SET read_seq = GREATEST(conversation_members.read_seq, EXCLUDED.read_seq)""",
            sids,
            aids,
        )
        by_id = {str(r["id"]): session_from_row(r) for r in rows}
        return [by_id[a.session_id] for a in decided]

    @staticmethod
    async def _snapshot(conn: Conn, queue: str, agents: dict[str, _Locked]) -> QueueSnapshot:
        revision = await conn.fetchval("UPDATE service_queues SET revision = revision + 1 WHERE code = $1 RETURNING revision", queue)
        rows = await conn.fetch(
            """SELECT id, customer_id, conversation_id, row_number() OVER (ORDER BY priority DESC, ticket) AS position
               FROM service_sessions WHERE queue = $1 AND state = 'waiting' ORDER BY position""",
            queue,
        )
        handle = await conn.fetchval(
            """SELECT avg(extract(epoch FROM ended_at - assigned_at)) FROM (
                   SELECT ended_at, assigned_at FROM service_assignments
                   WHERE queue = $1 AND ended_at IS NOT NULL ORDER BY ended_at DESC LIMIT $2) t""",
            queue,
            _HANDLE_SAMPLE,
        )
        slots = sum(a.load.capacity for a in agents.values() if a.skilled and a.load.state == "available")
        return QueueSnapshot(
            queue=queue,
            revision=int(revision),
            waiting=[
                WaitingEntry(str(r["id"]), str(r["customer_id"]), str(r["conversation_id"]), int(r["position"])) for r in rows
            ],
            slots=slots,
            avg_handle_seconds=float(handle) if handle is not None and handle > 0 else DEFAULT_HANDLE_SECONDS,
        )

    async def route(self, queue: str) -> RouteOutcome:
        """Assign as many waiting customers of ``queue`` as its available agents can take."""
        async with self.db.transaction("service_route") as conn:
            await self._lock_queue(conn, queue)
            agents = await self._lock_agents(conn, queue, ())
            return await self._route_locked(conn, queue, agents, changed=False)

    async def enqueue(self, session_id: str) -> tuple[SessionRow, RouteOutcome | None]:
        """A customer asks for a person: their session (state ``bot``) takes the next ticket of
        its queue and routing runs at once. A session already waiting or served is returned as is."""
        current = await self.session(session_id)
        if current is None:
            raise ServiceError("not_found", "no such service session")
        if current.state != "bot":
            return current, None
        async with self.db.transaction("service_enqueue") as conn:
            await self._lock_queue(conn, current.queue)
            agents = await self._lock_agents(conn, current.queue, ())
            session = await self._lock_session(conn, session_id)
            if session.state != "bot" or session.queue != current.queue:
                return session, None
            ticket = await self._next_ticket(conn, session.queue)
            await conn.execute(
                "UPDATE service_sessions SET state = 'waiting', ticket = $2, priority = 0, queued_at = clock_timestamp() WHERE id = $1",
                _uid(session_id),
                ticket,
            )
            outcome = await self._route_locked(conn, session.queue, agents, changed=True)
            after = await conn.fetchrow(f"SELECT {_SESSION_COLS} FROM service_sessions WHERE id = $1", _uid(session_id))
        return session_from_row(after), outcome

    async def cancel(self, session_id: str, customer_id: str) -> Change:
        """The customer leaves (state ``bot`` or ``waiting``): the session closes; a waiting
        list it leaves moves up."""
        current = await self.session(session_id)
        if current is None or current.customer_id != customer_id:
            raise ServiceError("not_found", "no such service session")
        if current.state not in ("bot", "waiting"):
            raise ServiceError("conflict", f"the session is {current.state}: only a session not yet served can be left")
        async with self.db.transaction("service_cancel") as conn:
            agents: dict[str, _Locked] = {}
            if current.state == "waiting":
                await self._lock_queue(conn, current.queue)
                agents = await self._lock_agents(conn, current.queue, ())
            session = await self._lock_session(conn, session_id)
            if session.state != current.state or session.queue != current.queue:
                raise ServiceError("conflict", "the session changed meanwhile; look again")
            row = await conn.fetchrow(
                f"""UPDATE service_sessions SET state = 'closed', ticket = NULL, closed_at = clock_timestamp(), closed_by = customer_id
                    WHERE id = $1 RETURNING {_SESSION_COLS}""",
                _uid(session_id),
            )
            routed = None
            if session.state == "waiting":
                routed = RouteOutcome(assigned=[], snapshot=await self._snapshot(conn, session.queue, agents))
        return Change(session=session_from_row(row), routed=routed)

    async def _end_stint(self, conn: Conn, session: SessionRow, outcome: str) -> None:
        """The serving agent's stint ends: their load drops, they leave the conversation."""
        assert session.agent_id is not None
        agent = _uid(session.agent_id)
        await conn.execute("UPDATE service_agents SET active = active - 1 WHERE user_id = $1", agent)
        await conn.execute(
            "UPDATE service_assignments SET ended_at = clock_timestamp(), outcome = $2 WHERE session_id = $1 AND ended_at IS NULL",
            _uid(session.id),
            outcome,
        )
        await conn.execute(
            "DELETE FROM conversation_members WHERE conversation_id = $1 AND user_id = $2", _uid(session.conversation_id), agent
        )

    @staticmethod
    async def _note(
        conn: Conn,
        key: DataKey,
        session: SessionRow,
        author_id: str,
        kind: str,
        text: str,
        to_queue: str | None = None,
        to_agent: str | None = None,
    ) -> None:
        """Store a note, its text sealed under the conversation's key (``key``) and bound to its row."""
        note_id = uuid.uuid4()
        await conn.execute(
            """INSERT INTO service_notes (id, session_id, author_id, kind, text_sealed, text_key_id, to_queue, to_agent)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8)""",
            note_id,
            _uid(session.id),
            _uid(author_id),
            kind,
            seal_text(key, NOTE_TEXT, session.conversation_id, str(note_id), text),
            DESK_TEXT_KEY_ID,
            to_queue,
            None if to_agent is None else _uid(to_agent),
        )

    async def _served(self, session_id: str) -> SessionRow:
        current = await self.session(session_id)
        if current is None:
            raise ServiceError("not_found", "no such service session")
        if current.state != "active" or current.agent_id is None:
            raise ServiceError("conflict", f"the session is {current.state}, not being served")
        return current

    @staticmethod
    def _same(session: SessionRow, expected: SessionRow) -> None:
        if session.state != "active" or session.agent_id != expected.agent_id:
            raise ServiceError("conflict", "the session changed meanwhile (transferred or closed); look again")

    async def close(self, session_id: str, actor_id: str, tags: Sequence[str], note: str | None, expected_agent: str) -> Change:
        """Close a served session with its tags (already validated)."""
        current = await self._served(session_id)
        if current.agent_id != expected_agent:
            raise ServiceError("conflict", "the session changed meanwhile (transferred or closed); look again")
        key = await self._sealing_key(current.conversation_id) if note else None
        async with self.db.transaction("service_close") as conn:
            await self._lock_agents(conn, None, [expected_agent])
            session = await self._lock_session(conn, session_id)
            self._same(session, current)
            await self._end_stint(conn, session, "closed")
            if note and key is not None:
                await self._note(conn, key, session, actor_id, "close", note)
            row = await conn.fetchrow(
                f"""UPDATE service_sessions SET state = 'closed', closed_at = clock_timestamp(), closed_by = $2, tags = $3
                    WHERE id = $1 RETURNING {_SESSION_COLS}""",
                _uid(session_id),
                _uid(actor_id),
                sorted(set(tags)),
            )
        return Change(session=session_from_row(row), released_agent=expected_agent)

    async def transfer_to_queue(self, session_id: str, actor_id: str, queue: str, note: str, expected_agent: str) -> Change:
        """Send a served session back to waiting, in ``queue``, ahead of new arrivals
        (priority 1); routing runs at once, preferring another agent than the one leaving."""
        current = await self._served(session_id)
        if current.agent_id != expected_agent:
            raise ServiceError("conflict", "the session changed meanwhile (transferred or closed); look again")
        key = await self._sealing_key(current.conversation_id)
        async with self.db.transaction("service_transfer_queue") as conn:
            await self._lock_queue(conn, queue)
            agents = await self._lock_agents(conn, queue, [expected_agent])
            session = await self._lock_session(conn, session_id)
            self._same(session, current)
            await self._end_stint(conn, session, "transferred")
            mine = agents[expected_agent]
            agents[expected_agent] = _Locked(dataclasses.replace(mine.load, active=mine.load.active - 1), mine.skilled)
            await self._note(conn, key, session, actor_id, "transfer", note, to_queue=queue)
            ticket = await self._next_ticket(conn, queue)
            await conn.execute(
                """UPDATE service_sessions SET state = 'waiting', queue = $2, ticket = $3, priority = 1, queued_at = clock_timestamp()
                   WHERE id = $1""",
                _uid(session_id),
                queue,
                ticket,
            )
            routed = await self._route_locked(conn, queue, agents, changed=True)
            row = await conn.fetchrow(f"SELECT {_SESSION_COLS} FROM service_sessions WHERE id = $1", _uid(session_id))
        return Change(session=session_from_row(row), released_agent=expected_agent, routed=routed)

    async def transfer_to_agent(self, session_id: str, actor_id: str, agent_id: str, note: str, expected_agent: str) -> Change:
        """Hand a served session straight to another agent, who must be available with free capacity."""
        current = await self._served(session_id)
        if current.agent_id != expected_agent:
            raise ServiceError("conflict", "the session changed meanwhile (transferred or closed); look again")
        if agent_id == expected_agent:
            raise ServiceError("invalid_request", "the session is already with this agent")
        key = await self._sealing_key(current.conversation_id)
        async with self.db.transaction("service_transfer_agent") as conn:
            agents = await self._lock_agents(conn, None, sorted({expected_agent, agent_id}))
            target = agents.get(agent_id)
            if target is None:
                raise ServiceError("not_found", "no such agent on the service desk")
            if target.load.state != "available" or target.load.active >= target.load.capacity:
                raise ServiceError("conflict", "that agent is not available or has no free capacity")
            session = await self._lock_session(conn, session_id)
            self._same(session, current)
            await self._end_stint(conn, session, "transferred")
            await self._note(conn, key, session, actor_id, "transfer", note, to_agent=agent_id)
            await conn.execute(
                "UPDATE service_agents SET active = active + 1, last_assigned_at = clock_timestamp() WHERE user_id = $1", _uid(agent_id)
            )
            await conn.execute(
                """INSERT INTO service_assignments (session_id, agent_id, queue, via, queued_at, assigned_at)
                   VALUES ($1, $2, $3, 'transfer', clock_timestamp(), clock_timestamp())""",
                _uid(session_id),
                _uid(agent_id),
                session.queue,
            )
            await conn.execute(
                """INSERT INTO conversation_members (conversation_id, user_id, role, read_seq) VALUES ($1, $2, 'member', $3)
                   ON CONFLICT (conversation_id, user_id) DO NOTHING""",
                _uid(session.conversation_id),
                _uid(agent_id),
                session.start_seq,
            )
            row = await conn.fetchrow(
                f"UPDATE service_sessions SET agent_id = $2, assigned_at = clock_timestamp() WHERE id = $1 RETURNING {_SESSION_COLS}",
                _uid(session_id),
                _uid(agent_id),
            )
        return Change(session=session_from_row(row), released_agent=expected_agent)

    async def rate(self, session_id: str, customer_id: str, score: int, comment: str | None) -> SessionRow:
        """The customer's CSAT (1-5), once, after an agent closed the session. The comment
        is sealed under the conversation's key, bound to this session's row; a comment on a
        shredded conversation is refused (``gone``), a score alone is still taken."""
        sealed: bytes | None = None
        if comment:
            current = await self.session(session_id)
            if current is None or current.customer_id != customer_id:
                raise ServiceError("conflict", "only a session an agent closed can be rated, and only once")
            key = await self._sealing_key(current.conversation_id)
            sealed = seal_text(key, CSAT_COMMENT, current.conversation_id, current.id, comment)
        async with self.db.connection("service_rate") as conn:
            row = await conn.fetchrow(
                f"""UPDATE service_sessions SET csat = $3, csat_comment_sealed = $4, csat_comment_key_id = $5, csat_at = now()
                    WHERE id = $1 AND customer_id = $2 AND state = 'closed' AND csat IS NULL
                      AND agent_id IS NOT NULL AND closed_by IS DISTINCT FROM customer_id
                    RETURNING {_SESSION_COLS}""",
                _uid(session_id),
                _uid(customer_id),
                score,
                sealed,
                None if sealed is None else DESK_TEXT_KEY_ID,
            )
        if row is None:
            raise ServiceError("conflict", "only a session an agent closed can be rated, and only once")
        return session_from_row(row)

    # --- texts stored before they were sealed (delta 0010) ------------------------------

    async def seal_legacy_text(self, batch: int = 200) -> int:
        """Seal the notes and CSAT comments still stored in plaintext and clear the plaintext;
        returns how many were sealed or, in a shredded conversation, cleared.

        Run by every node when it starts (the delta cannot: sealing needs the KEK). Walks
        the rows in id order, ``batch`` per transaction; each update is conditional on the
        plaintext still being there, so nodes running it at once do each row once. Raises
        :class:`KeyUnavailable` (nothing more done) if the key provider fails: run it again.
        """
        done = 0
        for table, field, prefix, sql in (
            (
                "service_notes",
                NOTE_TEXT,
                "text",
                """SELECT n.id, n.text AS plain, s.conversation_id FROM service_notes n
                   JOIN service_sessions s ON s.id = n.session_id
                   WHERE n.text IS NOT NULL AND n.id > $1 ORDER BY n.id LIMIT $2""",
            ),
            (
                "service_sessions",
                CSAT_COMMENT,
                "csat_comment",
                """SELECT id, csat_comment AS plain, conversation_id FROM service_sessions
                   WHERE csat_comment IS NOT NULL AND id > $1 ORDER BY id LIMIT $2""",
            ),
        ):
            after = uuid.UUID(int=0)
            while True:
                async with self.db.connection("service_legacy_text") as conn:
                    rows = await conn.fetch(sql, after, batch)
                if not rows:
                    break
                keys: dict[str, DataKey | None] = {}
                ids, sealed = [], []
                for r in rows:
                    conv = str(r["conversation_id"])
                    if conv not in keys:
                        keys[conv] = await self.text_key(conv)
                    key = keys[conv]
                    ids.append(r["id"])
                    # a shredded conversation: the plaintext is cleared, nothing is sealed
                    sealed.append(None if key is None else seal_text(key, field, conv, str(r["id"]), r["plain"]))
                async with self.db.transaction("service_seal_legacy_text") as conn:
                    status = await conn.execute(
                        f"""UPDATE {table} t SET {prefix} = NULL, {prefix}_sealed = v.sealed,
                                   {prefix}_key_id = CASE WHEN v.sealed IS NULL THEN NULL ELSE $3 END
                            FROM unnest($1::uuid[], $2::bytea[]) AS v(id, sealed)
                            WHERE t.id = v.id AND t.{prefix} IS NOT NULL""",
                        ids,
                        sealed,
                        DESK_TEXT_KEY_ID,
                    )
                done += int(status.rsplit(" ", 1)[-1])
                after = rows[-1]["id"]
        return done

    # --- figures -----------------------------------------------------------------------

    async def figures(self, since: dt.datetime) -> tuple[list[QueueFigures], list[AgentFigures]]:
        """Supervisor figures: waiting now and longest wait (live); average wait, average handle
        time, conversations handled and CSAT since ``since``; per queue and per agent."""
        async with self.db.connection("service_figures") as conn:
            queues = await conn.fetch(
                """SELECT q.code, q.name,
                          (SELECT count(*) FROM service_sessions s WHERE s.queue = q.code AND s.state = 'waiting') AS waiting,
                          (SELECT extract(epoch FROM now() - min(s.queued_at)) FROM service_sessions s
                             WHERE s.queue = q.code AND s.state = 'waiting') AS longest,
                          (SELECT avg(extract(epoch FROM a.assigned_at - a.queued_at)) FROM service_assignments a
                             WHERE a.queue = q.code AND a.via = 'queue' AND a.assigned_at >= $1) AS avg_wait,
                          (SELECT avg(extract(epoch FROM a.ended_at - a.assigned_at)) FROM service_assignments a
                             WHERE a.queue = q.code AND a.ended_at >= $1) AS avg_handle,
                          (SELECT count(*) FROM service_sessions s WHERE s.queue = q.code AND s.closed_at >= $1
                             AND s.agent_id IS NOT NULL AND s.closed_by IS DISTINCT FROM s.customer_id) AS handled,
                          c.avg AS csat_avg, COALESCE(c.n, 0) AS csat_count
                   FROM service_queues q
                   LEFT JOIN LATERAL (SELECT avg(csat)::float8 AS avg, count(*) AS n FROM service_sessions s
                                      WHERE s.queue = q.code AND s.csat_at >= $1) c ON true
                   ORDER BY q.code""",
                since,
            )
            agents = await conn.fetch(
                """SELECT a.user_id, u.username, u.display_name, a.state, a.capacity, a.active,
                          ARRAY(SELECT queue FROM service_agent_queues q WHERE q.user_id = a.user_id ORDER BY queue) AS queues,
                          (SELECT count(*) FROM service_assignments x WHERE x.agent_id = a.user_id AND x.ended_at >= $1) AS handled,
                          (SELECT avg(extract(epoch FROM x.ended_at - x.assigned_at)) FROM service_assignments x
                             WHERE x.agent_id = a.user_id AND x.ended_at >= $1) AS avg_handle,
                          c.avg AS csat_avg, COALESCE(c.n, 0) AS csat_count
                   FROM service_agents a JOIN users u ON u.id = a.user_id
                   LEFT JOIN LATERAL (SELECT avg(csat)::float8 AS avg, count(*) AS n FROM service_sessions s
                                      WHERE s.agent_id = a.user_id AND s.csat_at >= $1) c ON true
                   ORDER BY u.username""",
                since,
            )

        def f(v: Any) -> float | None:
            return None if v is None else round(float(v), 3)

        return (
            [
                QueueFigures(
                    queue=r["code"],
                    name=r["name"],
                    waiting=r["waiting"],
                    longest_wait_s=f(r["longest"]),
                    avg_wait_s=f(r["avg_wait"]),
                    avg_handle_s=f(r["avg_handle"]),
                    handled=r["handled"],
                    csat_avg=f(r["csat_avg"]),
                    csat_count=r["csat_count"],
                )
                for r in queues
            ],
            [
                AgentFigures(
                    user_id=str(r["user_id"]),
                    username=r["username"],
                    display_name=r["display_name"],
                    state=r["state"],
                    capacity=r["capacity"],
                    active=r["active"],
                    queues=list(r["queues"]),
                    handled=r["handled"],
                    avg_handle_s=f(r["avg_handle"]),
                    csat_avg=f(r["csat_avg"]),
                    csat_count=r["csat_count"],
                )
                for r in agents
            ],
        )


def is_retryable(exc: BaseException) -> bool:
    """A transaction lost to a deadlock or serialisation failure: safe to run again."""
    return isinstance(exc, (asyncpg.exceptions.DeadlockDetectedError, asyncpg.exceptions.SerializationError))
