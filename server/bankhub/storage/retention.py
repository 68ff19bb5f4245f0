"""Storage for retention (delta 0022): policies, purge runs and their batches, erasures,
dual-control requests, the records floor, and which message carries which media item.

A purge batch is one transaction (:meth:`RetentionStore.purge_batch`):

1. the legal holds' SHARED advisory lock first (:func:`~bankhub.storage.holds.lock_holds_shared_txn`):
   a hold being placed waits for this batch, and a batch that starts after it sees it; then
   the retention policies' shared lock (a policy change waits for the batch, and the batch
   after it sees it);
2. the run's row, locked, WHERE the worker's fencing token still owns it and it is still
   ``running``: a worker whose run was taken over stops here (:class:`PurgeFenced`), and a
   takeover waits for the batch in flight; the records floor is the higher of the run's and
   the database's (:meth:`RetentionStore.floor_txn`, which only ever rises);
3. the facts of the next chunk of conversations (kind, every member ever and their roles),
   from which the caller's pure rules (:mod:`bankhub.compliance.retention`) computed each
   conversation's cutoff — passed in, as ``cutoffs``;
4. up to ``limit`` due messages in keyset order ``(conversation_id, seq)`` after the run's
   cursor, each with whether it must be kept: an active hold holds it
   (:data:`~bankhub.storage.holds.HELD_MESSAGE_SQL`), or holds an edit or recall whose
   revision kept its replaced text, or an open or escalated supervision flag is on it.
   A conversation's newest message (``seq = last_seq``) is never due: it anchors the
   conversation's sync (``since`` answers ``has_more`` from the last message it returns).
   The scan is bounded through the primary key (see :data:`CLOCK_SLACK`);
5. the deletes: the messages (tables derived from messages cascade, ``message_media`` too),
   then the ``media`` rows they carried that no remaining message carries, with their blob
   keys queued in ``purge_blob_queue``;
6. the run's progress row (counters, cursor, heartbeat) and the caller's audit row for the batch.

The caller removes the queued blobs after the commit and then dequeues them.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import msgspec

from .db import Conn, Database
from .holds import HELD_MESSAGE_SQL, ConversationHeld, HoldRef, lock_holds_shared_txn
from .keys import ConversationKeyStore

__all__ = [
    "CLOCK_SLACK",
    "DUE_SQL",
    "RETENTION_LOCK_KEY",
    "PurgeFenced",
    "RequestRow",
    "link_media_txn",
    "lock_policies_exclusive_txn",
    "PolicyRow",
    "RunRow",
    "ConvFacts",
    "BatchOutcome",
    "UserConversation",
    "RetentionStore",
    "END_SEQ",
]

END_SEQ = 2**62
"""A cursor seq past every message of a conversation (the conversation is done)."""
_ZERO = uuid.UUID(int=0)
RETENTION_LOCK_KEY = 0x62616E6B72657465  # "bankrete": orders policy changes against purge batches
CLOCK_SLACK = dt.timedelta(days=1)
"""How far ``messages.created_at`` may run backwards along ``seq`` in one conversation.

A message's ``created_at`` is its send transaction's ``now()`` (its start), and its seq is
given under the conversation's row lock, so a higher seq was committed later but may carry
an earlier time — earlier by at most how long its transaction ran before it took the lock.
Send transactions are a handful of statements, each cut off by the pool's command timeout
(seconds). So every message after the first one (after the cursor) created at or after
``cutoff + CLOCK_SLACK`` is not due: the due scan reads the primary key ``(conversation_id,
seq)`` only up to there, then filters ``created_at < cutoff`` exactly — no index on
``created_at`` is needed on the send path."""
_FIRST_WINDOW, _MAX_WINDOW = 8, 512


def _held_as(alias: str) -> str:
    """:data:`HELD_MESSAGE_SQL` for a message aliased ``alias`` instead of ``m``."""
    sql = HELD_MESSAGE_SQL.replace("m.conversation_id", f"{alias}.conversation_id").replace("m.created_at", f"{alias}.created_at")
    assert " m." not in sql and "(m." not in sql, "HELD_MESSAGE_SQL names the message in a way this rewrite misses"
    return sql


_KEEP_SQL = f"""{HELD_MESSAGE_SQL}
    OR EXISTS (
        -- a held edit or recall of this message: its revision (the text it replaced) goes with this message
        SELECT 1 FROM message_revisions _rv
        JOIN messages _ch ON _ch.conversation_id = _rv.conversation_id AND _ch.seq = _rv.change_seq
        WHERE _rv.conversation_id = m.conversation_id AND _rv.message_id = m.id AND ({_held_as("_ch")}))
    OR EXISTS (
        -- under supervision review: the evidence stays until the flag is closed
        -- (a message id is unique per conversation only, delta 0027: the conversation is named too)
        SELECT 1 FROM supervision_flags _sf
        WHERE _sf.conversation_id = m.conversation_id AND _sf.message_id = m.id AND _sf.state IN ('open', 'escalated'))"""
"""True iff the due message ``m`` must be kept (module docstring, step 4)."""

DUE_SQL = f"""SELECT m.conversation_id, m.seq, m.id, m.kind, m.created_at, ({_KEEP_SQL}) AS held
    FROM unnest($1::uuid[], $2::timestamptz[]) AS d(cid, cutoff)
    JOIN conversations c ON c.id = d.cid
    -- the first message (after the cursor) created CLOCK_SLACK past the cutoff: no later one is due
    JOIN LATERAL (
        SELECT COALESCE((
            SELECT z.seq FROM messages z
            WHERE z.conversation_id = d.cid AND (z.conversation_id, z.seq) > ($3, $4)
              AND z.created_at >= d.cutoff + $6::interval
            ORDER BY z.seq LIMIT 1), c.last_seq) AS bound) AS b ON true
    JOIN LATERAL (
        SELECT y.conversation_id, y.seq, y.id, y.kind, y.created_at FROM messages y
        WHERE y.conversation_id = d.cid AND (y.conversation_id, y.seq) > ($3, $4)
          AND y.seq < LEAST(b.bound, c.last_seq) AND y.created_at < d.cutoff
        ORDER BY y.seq LIMIT $5) AS m ON true
    ORDER BY m.conversation_id, m.seq LIMIT $5"""
"""The due scan: $1 conversation ids, $2 their cutoffs, ($3, $4) the keyset cursor, $5 the limit, $6 :data:`CLOCK_SLACK`."""


class PurgeFenced(Exception):
    """The run is no longer this worker's (another took it over, or it was stopped)."""


class PolicyRow(msgspec.Struct, frozen=True):
    id: str
    scope: str
    value: str  # kind, role, or the user id
    username: str | None  # a user policy's account
    days: int
    created_by: str  # username
    created_at: dt.datetime


class RunRow(msgspec.Struct, frozen=True):
    id: str
    state: str
    started_by: str | None  # username; None: the node's periodic purge
    started_at: dt.datetime
    finished_at: dt.datetime | None
    heartbeat_at: dt.datetime
    now_at: dt.datetime
    batch_size: int
    floor_days: int
    cursor_conversation: str | None
    cursor_seq: int
    scanned: int
    deleted_messages: int
    deleted_media: int
    refused_held: int
    batches: int
    error: str | None
    owner: str | None = None  # the fencing token of the worker that runs it


class RequestRow(msgspec.Struct, frozen=True):
    """A dual-control request: a policy change or an erasure waiting for a second officer."""

    id: str
    kind: str  # policy_set | policy_remove | erasure
    state: str  # pending | approved | rejected
    requested_by: str  # username
    requested_by_id: str
    requested_at: dt.datetime
    scope: str | None
    value: str | None  # a kind, a role, or (scope user) the account's username
    user_id: str | None
    username: str | None  # the policy's or the erasure's account
    days: int | None
    policy_id: str | None
    reason: str | None
    decided_by: str | None  # username
    decided_at: dt.datetime | None
    result_id: str | None


class ConvFacts(msgspec.Struct, frozen=True):
    """A conversation as the retention rules see it: kind, every member ever, their roles."""

    id: str
    kind: str
    member_ids: frozenset[str]
    member_roles: frozenset[str]


class BatchOutcome(msgspec.Struct):
    scanned: int
    deleted_messages: int
    deleted_media: int
    refused_held: int
    blob_keys: list[str]
    cursor_conversation: str | None
    cursor_seq: int
    finished: bool


class UserConversation(msgspec.Struct, frozen=True):
    """One conversation of a user who asked for erasure, and what decides its fate."""

    id: str
    kind: str
    member_ids: frozenset[str]  # every member ever
    member_roles: frozenset[str]
    current_members: int
    is_member: bool  # the user is a member now
    newest_at: dt.datetime | None


_RUN_COLS = """r.id, r.state, u.username AS started_by, r.started_at, r.finished_at, r.heartbeat_at, r.now_at,
               r.batch_size, r.floor_days, r.cursor_conversation, r.cursor_seq, r.scanned, r.deleted_messages, r.deleted_media,
               r.refused_held, r.batches, r.error, r.owner"""
_RUN_FROM = "FROM purge_runs r LEFT JOIN users u ON u.id = r.started_by"


def _run(r: Any) -> RunRow:
    cc = r["cursor_conversation"]
    return RunRow(
        id=str(r["id"]),
        state=r["state"],
        started_by=r["started_by"],
        started_at=r["started_at"],
        finished_at=r["finished_at"],
        heartbeat_at=r["heartbeat_at"],
        now_at=r["now_at"],
        batch_size=r["batch_size"],
        floor_days=r["floor_days"],
        cursor_conversation=None if cc is None else str(cc),
        cursor_seq=r["cursor_seq"],
        scanned=r["scanned"],
        deleted_messages=r["deleted_messages"],
        deleted_media=r["deleted_media"],
        refused_held=r["refused_held"],
        batches=r["batches"],
        error=r["error"],
        owner=None if r["owner"] is None else str(r["owner"]),
    )


_REQ_SELECT = """SELECT q.id, q.kind, q.state, rb.username AS requested_by, q.requested_by AS requested_by_id, q.requested_at,
                         q.scope, q.value, q.user_id, tu.username, q.days, q.policy_id, q.reason,
                         db.username AS decided_by, q.decided_at, q.result_id
                  FROM retention_requests q
                  JOIN users rb ON rb.id = q.requested_by
                  LEFT JOIN users tu ON tu.id = q.user_id
                  LEFT JOIN users db ON db.id = q.decided_by"""


def _opt(v: Any) -> str | None:
    return None if v is None else str(v)


def _request(r: Any) -> RequestRow:
    return RequestRow(
        id=str(r["id"]),
        kind=r["kind"],
        state=r["state"],
        requested_by=r["requested_by"],
        requested_by_id=str(r["requested_by_id"]),
        requested_at=r["requested_at"],
        scope=r["scope"],
        value=r["username"] if r["scope"] == "user" and r["username"] else r["value"],
        user_id=_opt(r["user_id"]),
        username=r["username"],
        days=r["days"],
        policy_id=_opt(r["policy_id"]),
        reason=r["reason"],
        decided_by=r["decided_by"],
        decided_at=r["decided_at"],
        result_id=_opt(r["result_id"]),
    )


async def lock_policies_exclusive_txn(conn: Conn) -> None:
    """A policy change: waits for the purge batch in flight; the next batch sees the change."""
    await conn.execute("SELECT pg_advisory_xact_lock($1)", RETENTION_LOCK_KEY)


async def link_media_txn(conn: Conn, links: Sequence[tuple[str, str, str]]) -> None:
    """In a send's transaction: message ``message_id`` of ``conversation_id`` carries media item
    ``media_id`` (triples ``(conversation_id, message_id, media_id)``)."""
    if links:
        await conn.execute(
            """INSERT INTO message_media (conversation_id, message_id, media_id)
               SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::uuid[]) ON CONFLICT DO NOTHING""",
            [uuid.UUID(c) for c, _, _ in links],
            [uuid.UUID(m) for _, m, _ in links],
            [uuid.UUID(d) for _, _, d in links],
        )


def _variant_keys(text: str) -> list[str]:
    variants = msgspec.json.decode(text)
    return [str(v["key"]) for v in variants.values() if isinstance(v, dict) and "key" in v]


class RetentionStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    # --- policies ----------------------------------------------------------------------

    async def policies(self, after: tuple[str, str] | None = None, limit: int = 1000) -> list[PolicyRow]:
        """Policies in (scope, value) order after ``after``."""
        async with self.db.connection("retention_policies") as conn:
            rows = await conn.fetch(
                """SELECT p.id, p.scope, p.value, t.username, p.days, COALESCE(c.username, 'system') AS created_by, p.created_at
                   FROM retention_policies p
                   LEFT JOIN users c ON c.id = p.created_by
                   LEFT JOIN users t ON t.id = p.user_id
                   WHERE (p.scope, p.value) > ($1, $2)
                   ORDER BY p.scope, p.value LIMIT $3""",
                *(after or ("", "")),
                limit,
            )
        return [
            PolicyRow(str(r["id"]), r["scope"], r["value"], r["username"], r["days"], r["created_by"], r["created_at"])
            for r in rows
        ]

    @staticmethod
    async def policy_txn(conn: Conn, policy_id: str) -> PolicyRow | None:
        r = await conn.fetchrow(
            """SELECT p.id, p.scope, p.value, t.username, p.days, COALESCE(c.username, 'system') AS created_by, p.created_at
               FROM retention_policies p
               LEFT JOIN users c ON c.id = p.created_by
               LEFT JOIN users t ON t.id = p.user_id
               WHERE p.id = $1""",
            uuid.UUID(policy_id),
        )
        if r is None:
            return None
        return PolicyRow(str(r["id"]), r["scope"], r["value"], r["username"], r["days"], r["created_by"], r["created_at"])

    @staticmethod
    async def set_policy_txn(
        conn: Conn, scope: str, value: str, user_id: str | None, days: int, actor_id: str | None
    ) -> tuple[str, int | None]:
        """Insert or replace the policy of (scope, value); returns its id and the days it replaced (None: new)."""
        old = await conn.fetchrow(
            "SELECT id, days FROM retention_policies WHERE scope = $1 AND value = $2 FOR UPDATE", scope, value
        )
        if old is not None:
            await conn.execute(
                "UPDATE retention_policies SET days = $2, created_by = $3, created_at = now() WHERE id = $1",
                old["id"],
                days,
                uuid.UUID(actor_id) if actor_id else None,
            )
            return str(old["id"]), int(old["days"])
        # ON CONFLICT: callers hold the policies' exclusive lock, but a writer that does not must
        # not turn a race into a unique violation
        pid = await conn.fetchval(
            """INSERT INTO retention_policies (id, scope, value, user_id, days, created_by)
               VALUES ($1, $2, $3, $4, $5, $6)
               ON CONFLICT (scope, value) DO UPDATE SET days = EXCLUDED.days, created_by = EXCLUDED.created_by,
                   created_at = now()
               RETURNING id""",
            uuid.uuid4(),
            scope,
            value,
            uuid.UUID(user_id) if user_id else None,
            days,
            uuid.UUID(actor_id) if actor_id else None,
        )
        return str(pid), None

    @staticmethod
    async def policy_days_txn(conn: Conn, scope: str, value: str) -> int | None:
        """The days of the policy of (scope, value); None when there is none."""
        days = await conn.fetchval("SELECT days FROM retention_policies WHERE scope = $1 AND value = $2", scope, value)
        return None if days is None else int(days)

    @staticmethod
    async def delete_policy_txn(conn: Conn, policy_id: str) -> tuple[str, str, int] | None:
        """Delete a policy; returns its (scope, value, days), None if there is none."""
        r = await conn.fetchrow(
            "DELETE FROM retention_policies WHERE id = $1 RETURNING scope, value, days", uuid.UUID(policy_id)
        )
        return None if r is None else (r["scope"], r["value"], int(r["days"]))

    @staticmethod
    async def all_policies_txn(conn: Conn) -> list[tuple[str, str, int]]:
        rows = await conn.fetch("SELECT scope, value, days FROM retention_policies")
        return [(r["scope"], r["value"], int(r["days"])) for r in rows]

    @staticmethod
    async def policies_in_force_txn(conn: Conn) -> list[dict[str, Any]]:
        """Every policy's id and days (what a purge run starts under, for its audit row)."""
        rows = await conn.fetch("SELECT id, scope, value, days FROM retention_policies ORDER BY scope, value")
        return [{"policy_id": str(r["id"]), "scope": r["scope"], "value": r["value"], "days": int(r["days"])} for r in rows]

    # --- dual control --------------------------------------------------------------------

    @staticmethod
    async def add_request_txn(
        conn: Conn,
        kind: str,
        requested_by: str,
        *,
        scope: str | None = None,
        value: str | None = None,
        user_id: str | None = None,
        days: int | None = None,
        policy_id: str | None = None,
        reason: str | None = None,
    ) -> RequestRow:
        rid = uuid.uuid4()
        await conn.execute(
            """INSERT INTO retention_requests (id, kind, state, requested_by, scope, value, user_id, days, policy_id, reason)
               VALUES ($1, $2, 'pending', $3, $4, $5, $6, $7, $8, $9)""",
            rid,
            kind,
            uuid.UUID(requested_by),
            scope,
            value,
            uuid.UUID(user_id) if user_id else None,
            days,
            uuid.UUID(policy_id) if policy_id else None,
            reason,
        )
        row = await RetentionStore.request_txn(conn, str(rid))
        assert row is not None
        return row

    @staticmethod
    async def request_txn(conn: Conn, request_id: str, *, lock: bool = False) -> RequestRow | None:
        r = await conn.fetchrow(
            f"{_REQ_SELECT} WHERE q.id = $1" + (" FOR UPDATE OF q" if lock else ""), uuid.UUID(request_id)
        )
        return None if r is None else _request(r)

    async def requests(self, state: str | None, after: tuple[dt.datetime, str] | None, limit: int) -> list[RequestRow]:
        """Requests (of ``state``, or all), newest first, after the keyset ``after`` (requested_at, id)."""
        async with self.db.connection("retention_requests") as conn:
            rows = await conn.fetch(
                f"""{_REQ_SELECT} WHERE ($1::text IS NULL OR q.state = $1)
                    AND ($2::timestamptz IS NULL OR (q.requested_at, q.id) < ($2, $3))
                    ORDER BY q.requested_at DESC, q.id DESC LIMIT $4""",
                state,
                after[0] if after else None,
                uuid.UUID(after[1]) if after else _ZERO,
                limit,
            )
        return [_request(r) for r in rows]

    @staticmethod
    async def decide_request_txn(
        conn: Conn, request_id: str, state: str, decided_by: str | None, result_id: str | None = None
    ) -> None:
        await conn.execute(
            """UPDATE retention_requests SET state = $2, decided_by = $3, decided_at = now(), result_id = $4
               WHERE id = $1 AND state = 'pending'""",
            uuid.UUID(request_id),
            state,
            uuid.UUID(decided_by) if decided_by else None,
            uuid.UUID(result_id) if result_id else None,
        )

    # --- purge runs --------------------------------------------------------------------

    @staticmethod
    async def floor_txn(conn: Conn, floor_days: int) -> int:
        """The records floor in force: the database's, raised to ``floor_days`` (a node's
        setting) if that is higher — it never goes down."""
        await conn.execute(
            """INSERT INTO retention_floor (id, floor_days) VALUES (true, $1)
               ON CONFLICT (id) DO UPDATE SET floor_days = EXCLUDED.floor_days, raised_at = now()
               WHERE retention_floor.floor_days < EXCLUDED.floor_days""",
            floor_days,
        )
        return int(await conn.fetchval("SELECT floor_days FROM retention_floor"))

    async def floor(self, floor_days: int) -> int:
        async with self.db.transaction("retention_floor") as conn:
            return await self.floor_txn(conn, floor_days)

    @staticmethod
    async def start_run_txn(
        conn: Conn, started_by: str | None, batch_size: int, floor_days: int, stale_after: dt.timedelta
    ) -> RunRow | None:
        """A new running run owned by a new fencing token (a running one whose heartbeat is older
        than ``stale_after`` is marked ``interrupted`` first); None while another run is running."""
        await conn.execute("LOCK TABLE purge_runs IN SHARE ROW EXCLUSIVE MODE")
        await conn.execute(
            "UPDATE purge_runs SET state = 'interrupted', owner = NULL WHERE state = 'running' AND heartbeat_at < now() - $1::interval",
            stale_after,
        )
        if await conn.fetchval("SELECT 1 FROM purge_runs WHERE state = 'running'") is not None:
            return None
        rid = uuid.uuid4()
        floor = await RetentionStore.floor_txn(conn, floor_days)
        await conn.execute(
            """INSERT INTO purge_runs (id, state, started_by, now_at, batch_size, floor_days, owner)
               VALUES ($1, 'running', $2, now(), $3, $4, $5)""",
            rid,
            uuid.UUID(started_by) if started_by else None,
            batch_size,
            floor,
            uuid.uuid4(),
        )
        return await RetentionStore._get(conn, rid)

    @staticmethod
    async def claim_resume_txn(
        conn: Conn, run_id: str, batch_size: int | None, floor_days: int, stale_after: dt.timedelta
    ) -> tuple[str, RunRow | None]:
        """Take over an ``interrupted``/``failed`` run (or a ``running`` one with a stale
        heartbeat) under a new fencing token, its floor raised to the one in force:
        ``("resumed", run)``; else ``("not_found"|"busy"|"finished", run-or-None)``."""
        rid = uuid.UUID(run_id)
        await conn.execute("LOCK TABLE purge_runs IN SHARE ROW EXCLUSIVE MODE")
        r = await conn.fetchrow(
            "SELECT state, heartbeat_at < now() - $2::interval AS stale FROM purge_runs WHERE id = $1", rid, stale_after
        )
        if r is None:
            return "not_found", None
        if r["state"] == "done":
            return "finished", await RetentionStore._get(conn, rid)
        if r["state"] == "running" and not r["stale"]:
            return "busy", await RetentionStore._get(conn, rid)
        other = await conn.fetchval(
            """SELECT 1 FROM purge_runs WHERE state = 'running' AND id <> $1
               AND heartbeat_at >= now() - $2::interval""",
            rid,
            stale_after,
        )
        if other is not None:
            return "busy", await RetentionStore._get(conn, rid)
        await conn.execute(
            "UPDATE purge_runs SET state = 'interrupted', owner = NULL WHERE state = 'running' AND id <> $1", rid
        )
        floor = await RetentionStore.floor_txn(conn, floor_days)
        # a new token: the old worker (if alive after all) fails its next batch's ownership check
        await conn.execute(
            """UPDATE purge_runs SET state = 'running', heartbeat_at = now(), finished_at = NULL, error = NULL,
                      batch_size = COALESCE($2, batch_size), floor_days = GREATEST(floor_days, $3), owner = $4
               WHERE id = $1""",
            rid,
            batch_size,
            floor,
            uuid.uuid4(),
        )
        return "resumed", await RetentionStore._get(conn, rid)

    @staticmethod
    async def _get(conn: Conn, rid: uuid.UUID) -> RunRow | None:
        r = await conn.fetchrow(f"SELECT {_RUN_COLS} {_RUN_FROM} WHERE r.id = $1", rid)
        return None if r is None else _run(r)

    async def get_run(self, run_id: str) -> RunRow | None:
        try:
            rid = uuid.UUID(run_id)
        except ValueError:
            return None
        async with self.db.connection("purge_run") as conn:
            return await self._get(conn, rid)

    async def runs(self, after: tuple[dt.datetime, str] | None, limit: int) -> list[RunRow]:
        """Runs, newest first, after the keyset ``after`` (started_at, id)."""
        async with self.db.connection("purge_runs") as conn:
            if after is None:
                rows = await conn.fetch(f"SELECT {_RUN_COLS} {_RUN_FROM} ORDER BY r.started_at DESC, r.id DESC LIMIT $1", limit)
            else:
                rows = await conn.fetch(
                    f"""SELECT {_RUN_COLS} {_RUN_FROM} WHERE (r.started_at, r.id) < ($1, $2)
                        ORDER BY r.started_at DESC, r.id DESC LIMIT $3""",
                    after[0],
                    uuid.UUID(after[1]),
                    limit,
                )
        return [_run(r) for r in rows]

    @staticmethod
    async def finish_run_txn(conn: Conn, run: RunRow, state: str, error: str | None = None) -> bool:
        """Mark a run ``done``/``failed`` (finished) or ``interrupted`` (resumable) — only while
        ``run.owner`` still owns it and it is running; False when it no longer does (nothing changed)."""
        assert state in ("done", "failed", "interrupted")
        status = await conn.execute(
            """UPDATE purge_runs SET state = $2, error = $3, heartbeat_at = now(), owner = NULL,
                      finished_at = CASE WHEN $2 IN ('done', 'failed') THEN now() END
               WHERE id = $1 AND owner = $4 AND state = 'running'""",
            uuid.UUID(run.id),
            state,
            error,
            uuid.UUID(run.owner) if run.owner else _ZERO,
        )
        return status.rsplit(" ", 1)[-1] != "0"

    async def heartbeat(self, run: RunRow) -> None:
        """Show the worker is alive (after a slow blob drain); :class:`PurgeFenced` if the run is no longer its own."""
        async with self.db.transaction("purge_run_heartbeat") as conn:
            status = await conn.execute(
                "UPDATE purge_runs SET heartbeat_at = now() WHERE id = $1 AND owner = $2 AND state = 'running'",
                uuid.UUID(run.id),
                uuid.UUID(run.owner) if run.owner else _ZERO,
            )
        if status.rsplit(" ", 1)[-1] == "0":
            raise PurgeFenced(run.id)

    # --- one batch ---------------------------------------------------------------------

    @staticmethod
    async def chunk_txn(conn: Conn, after_conversation: str | None, limit: int) -> list[ConvFacts]:
        """Facts of up to ``limit`` conversations with id >= ``after_conversation``, in id order."""
        rows = await conn.fetch(
            """SELECT c.id, c.kind,
                      array_remove(array_agg(DISTINCT l.user_id), NULL) AS member_ids,
                      array_remove(array_agg(DISTINCT u.role), NULL) AS roles
               FROM (SELECT id, kind FROM conversations WHERE id >= $1 ORDER BY id LIMIT $2) c
               LEFT JOIN membership_log l ON l.conversation_id = c.id
               LEFT JOIN users u ON u.id = l.user_id
               GROUP BY c.id, c.kind ORDER BY c.id""",
            uuid.UUID(after_conversation) if after_conversation else _ZERO,
            limit,
        )
        return [
            ConvFacts(str(r["id"]), r["kind"], frozenset(str(x) for x in r["member_ids"]), frozenset(r["roles"]))
            for r in rows
        ]

    @staticmethod
    async def due_txn(
        conn: Conn, cutoffs: Sequence[tuple[str, dt.datetime]], after: tuple[str | None, int], limit: int
    ) -> list[Any]:
        """Up to ``limit`` due messages of the conversations in ``cutoffs`` after the keyset ``after``,
        each with ``held``: it must be kept (see the module docstring, step 4)."""
        if not cutoffs:
            return []
        return await conn.fetch(
            DUE_SQL,
            [uuid.UUID(c) for c, _ in cutoffs],
            [t for _, t in cutoffs],
            uuid.UUID(after[0]) if after[0] else _ZERO,
            after[1],
            limit,
            CLOCK_SLACK,
        )

    @staticmethod
    async def delete_txn(conn: Conn, run_id: str, rows: Sequence[Any]) -> tuple[int, int, list[str], int, list[Any]]:
        """Delete the messages ``rows`` (not held) with their revisions and the media no remaining
        message carries; returns (messages deleted, media deleted, blob keys queued, messages kept
        because a held message's revision refers to them, the deleted rows)."""
        if not rows:
            return 0, 0, [], 0, []
        convs = [r["conversation_id"] for r in rows]
        seqs = [r["seq"] for r in rows]
        ids = [r["id"] for r in rows]
        # an edit/recall message whose revision belongs to a message not deleted now (a held
        # one) stays: the held message's replaced body refers to it
        # (a message id is unique per conversation only, delta 0027: a message is named by both,
        # as one text value, so that the filter stays a plain one over the change_seq index lookup)
        keep = await conn.fetch(
            """SELECT DISTINCT r.conversation_id, r.change_seq FROM message_revisions r
               JOIN unnest($1::uuid[], $2::bigint[]) AS d(c, s) ON r.conversation_id = d.c AND r.change_seq = d.s
               WHERE r.conversation_id::text || '/' || r.message_id::text <> ALL($3::text[])""",
            convs,
            seqs,
            [f"{c}/{i}" for c, i in zip(convs, ids)],
        )
        kept = {(r["conversation_id"], r["change_seq"]) for r in keep}
        if kept:
            rows = [r for r in rows if (r["conversation_id"], r["seq"]) not in kept]
        if not rows:
            return 0, 0, [], len(kept), []
        # the media items these messages carry (message_media, written by the send)
        carried = [
            r["media_id"]
            for r in await conn.fetch(
                """SELECT DISTINCT l.media_id FROM message_media l
                   JOIN unnest($1::uuid[], $2::uuid[]) AS d(c, i) ON l.conversation_id = d.c AND l.message_id = d.i
                   ORDER BY l.media_id""",
                [r["conversation_id"] for r in rows],
                [r["id"] for r in rows],
            )
        ]
        # their message_revisions (as the target, or as the edit/recall that made the change) and
        # their message_media links go by ON DELETE CASCADE: the hub's role has no DELETE on the
        # append-only revisions (delta 0022)
        # by the primary key: each row's conversation picks its partition (delta 0027)
        status = await conn.execute(
            """DELETE FROM messages m USING unnest($1::uuid[], $2::bigint[]) AS d(c, s)
               WHERE m.conversation_id = d.c AND m.seq = d.s""",
            [r["conversation_id"] for r in rows],
            [r["seq"] for r in rows],
        )
        blob_keys: list[str] = []
        media_deleted = 0
        if carried:
            # lock the items first: a send in flight that locked one (media lock_for_send) commits
            # its link before this statement's snapshot, and a later send finds the item gone
            await conn.execute("SELECT 1 FROM media WHERE id = ANY($1::uuid[]) ORDER BY id FOR UPDATE", carried)
            media = await conn.fetch(
                """DELETE FROM media md WHERE md.id = ANY($1::uuid[])
                   AND NOT EXISTS (SELECT 1 FROM message_media l WHERE l.media_id = md.id)
                   RETURNING md.variants::text AS variants""",
                carried,
            )
            media_deleted = len(media)
            for m in media:
                blob_keys.extend(_variant_keys(m["variants"]))
            if blob_keys:
                await conn.execute(
                    """INSERT INTO purge_blob_queue (key, run_id) SELECT k, $2 FROM unnest($1::text[]) AS k
                       ON CONFLICT (key) DO NOTHING""",
                    blob_keys,
                    uuid.UUID(run_id),
                )
        return int(status.rsplit(" ", 1)[-1]), media_deleted, blob_keys, len(kept), list(rows)

    @staticmethod
    async def progress_txn(conn: Conn, run: RunRow, o: BatchOutcome) -> None:
        status = await conn.execute(
            """UPDATE purge_runs SET scanned = scanned + $2, deleted_messages = deleted_messages + $3,
                      deleted_media = deleted_media + $4, refused_held = refused_held + $5, batches = batches + 1,
                      cursor_conversation = $6, cursor_seq = $7, heartbeat_at = now()
               WHERE id = $1 AND owner = $8 AND state = 'running'""",
            uuid.UUID(run.id),
            o.scanned,
            o.deleted_messages,
            o.deleted_media,
            o.refused_held,
            uuid.UUID(o.cursor_conversation) if o.cursor_conversation else None,
            o.cursor_seq,
            uuid.UUID(run.owner) if run.owner else _ZERO,
        )
        if status.rsplit(" ", 1)[-1] == "0":
            raise PurgeFenced(run.id)  # rolls the batch back

    async def purge_batch(
        self,
        run: RunRow,
        limit: int,
        chunk: int,
        floor_days: int,
        cutoffs_for: Callable[[list[tuple[str, str, int]], list[ConvFacts], dt.datetime, int], list[tuple[str, dt.datetime]]],
        audit_batch: Callable[[Conn, BatchOutcome, list[Any], int], Awaitable[None]] | None = None,
    ) -> BatchOutcome:
        """One batch of ``run`` in one transaction (see the module docstring); ``cutoffs_for``
        (the pure rules) maps (policies, conversation facts, the run's clock, the floor) to the
        (conversation id, cutoff) pairs of the conversations with a retention; ``floor_days`` is
        the node's setting (the batch keeps the highest of it, the run's and the database's);
        ``audit_batch(conn, outcome, deleted rows, floor)`` records the batch in its transaction.
        Raises :class:`PurgeFenced` (nothing done) when the run is no longer ``run.owner``'s."""
        async with self.db.transaction("purge_batch") as conn:
            # FIRST: a hold being placed waits for this batch; one placed before is seen below
            await lock_holds_shared_txn(conn)
            # then the policies: a change waits for this batch, the next batch sees it
            await conn.execute("SELECT pg_advisory_xact_lock_shared($1)", RETENTION_LOCK_KEY)
            own = await conn.fetchval(
                "SELECT floor_days FROM purge_runs WHERE id = $1 AND owner = $2 AND state = 'running' FOR UPDATE",
                uuid.UUID(run.id),
                uuid.UUID(run.owner) if run.owner else _ZERO,
            )
            if own is None:
                raise PurgeFenced(run.id)
            floor = max(int(own), await self.floor_txn(conn, floor_days))
            policies = await self.all_policies_txn(conn)
            facts = await self.chunk_txn(conn, run.cursor_conversation, chunk)
            cutoffs = cutoffs_for(policies, facts, run.now_at, floor) if policies else []
            # the conversations in windows, in id order, growing: each window's query reads at most
            # (window x what is still missing) rows, and the batch stops reading once it is full
            rows: list[Any] = []
            at, width = 0, _FIRST_WINDOW
            while at < len(cutoffs) and len(rows) < limit:
                window = cutoffs[at : at + width]
                rows += await self.due_txn(conn, window, (run.cursor_conversation, run.cursor_seq), limit - len(rows))
                at += width
                width = min(width * 4, _MAX_WINDOW)
            held = [r for r in rows if r["held"]]
            deleted, media, keys, kept, gone = await self.delete_txn(conn, run.id, [r for r in rows if not r["held"]])
            if len(rows) >= limit:
                cursor_conv: str | None = str(rows[-1]["conversation_id"])
                cursor_seq = int(rows[-1]["seq"])
                finished = False
            elif facts:
                # the chunk is done: stand past its last conversation
                cursor_conv, cursor_seq = facts[-1].id, END_SEQ
                finished = len(facts) < chunk
            else:
                cursor_conv, cursor_seq, finished = run.cursor_conversation, run.cursor_seq, True
            outcome = BatchOutcome(
                scanned=len(rows),
                deleted_messages=deleted,
                deleted_media=media,
                refused_held=len(held) + kept,
                blob_keys=keys,
                cursor_conversation=cursor_conv,
                cursor_seq=cursor_seq,
                finished=finished,
            )
            await self.progress_txn(conn, run, outcome)
            if audit_batch is not None and gone:
                await audit_batch(conn, outcome, gone, floor)
        return outcome

    # --- blobs waiting to be removed ------------------------------------------------------

    async def queued_blobs(self, limit: int) -> list[str]:
        async with self.db.connection("purge_blob_queue") as conn:
            rows = await conn.fetch("SELECT key FROM purge_blob_queue ORDER BY queued_at, key LIMIT $1", limit)
        return [r["key"] for r in rows]

    async def sample_media_blob(self) -> str | None:
        """The blob key of one stored media item (None: there is none): a blob store that does
        not hold it is not the hub's."""
        async with self.db.connection("media_sample") as conn:
            variants = await conn.fetchval("SELECT variants::text FROM media WHERE attached_at IS NOT NULL LIMIT 1")
        keys = [] if variants is None else _variant_keys(variants)
        return keys[0] if keys else None

    async def dequeue_blobs(self, keys: Sequence[str]) -> None:
        if keys:
            async with self.db.transaction("purge_blob_dequeue") as conn:
                await conn.execute("DELETE FROM purge_blob_queue WHERE key = ANY($1::text[])", list(keys))

    # --- erasure -----------------------------------------------------------------------

    async def user_conversations(self, user_id: str) -> list[UserConversation]:
        """Every conversation ``user_id`` is (or was) a member of, with its members ever and their roles."""
        async with self.db.connection("erasure_conversations") as conn:
            rows = await conn.fetch(
                """SELECT c.id, c.kind,
                          array_agg(DISTINCT l.user_id) AS member_ids,
                          array_agg(DISTINCT u.role) AS roles,
                          (SELECT count(*) FROM conversation_members cm WHERE cm.conversation_id = c.id) AS current_members,
                          EXISTS (SELECT 1 FROM conversation_members cm
                                  WHERE cm.conversation_id = c.id AND cm.user_id = $1) AS is_member,
                          (SELECT max(created_at) FROM messages m WHERE m.conversation_id = c.id) AS newest_at
                   FROM conversations c
                   JOIN membership_log l ON l.conversation_id = c.id
                   JOIN users u ON u.id = l.user_id
                   WHERE c.id IN (SELECT conversation_id FROM membership_log WHERE user_id = $1
                                  UNION SELECT conversation_id FROM conversation_members WHERE user_id = $1)
                   GROUP BY c.id, c.kind ORDER BY c.id""",
                uuid.UUID(user_id),
            )
        return [
            UserConversation(
                str(r["id"]),
                r["kind"],
                frozenset(str(x) for x in r["member_ids"]),
                frozenset(r["roles"]),
                int(r["current_members"]),
                bool(r["is_member"]),
                r["newest_at"],
            )
            for r in rows
        ]

    @staticmethod
    async def erasable_txn(conn: Conn, conversation_id: str, user_id: str) -> tuple[str, frozenset[str], int]:
        """In the shredding transaction: the conversation's kind, the roles of every member it
        ever had, and how many members other than ``user_id`` it has now."""
        r = await conn.fetchrow(
            """SELECT c.kind,
                      ARRAY(SELECT DISTINCT u.role FROM membership_log l JOIN users u ON u.id = l.user_id
                            WHERE l.conversation_id = c.id
                            UNION SELECT u.role FROM conversation_members cm JOIN users u ON u.id = cm.user_id
                            WHERE cm.conversation_id = c.id) AS roles,
                      (SELECT count(*) FROM conversation_members cm WHERE cm.conversation_id = c.id AND cm.user_id <> $2) AS others
               FROM conversations c WHERE c.id = $1""",
            uuid.UUID(conversation_id),
            uuid.UUID(user_id),
        )
        if r is None:
            return "direct", frozenset(), 0
        return r["kind"], frozenset(r["roles"]), int(r["others"])

    async def shred_unless_held(
        self, conversation_id: str, in_transaction: Callable[[Conn], Awaitable[None]] | None = None
    ) -> tuple[str, list[HoldRef]]:
        """Crypto-shred unless an active hold covers the conversation: the shred's own
        transaction takes the holds' shared lock first and checks the holds there
        (:meth:`~bankhub.storage.keys.ConversationKeyStore.shred`). Returns (``"held"``, holds)
        or (``"shredded"``|``"already_shredded"``|``"not_found"``, [])."""
        try:
            return await ConversationKeyStore(self.db).shred(conversation_id, in_transaction=in_transaction), []
        except ConversationHeld as exc:
            return "held", exc.holds

    @staticmethod
    async def record_erasure_txn(
        conn: Conn, erasure_id: str, user_id: str, actor_id: str | None, reason: str, report: bytes
    ) -> None:
        await conn.execute(
            "INSERT INTO erasures (id, user_id, requested_by, reason, report) VALUES ($1, $2, $3, $4, $5::jsonb)",
            uuid.UUID(erasure_id),
            uuid.UUID(user_id),
            uuid.UUID(actor_id) if actor_id else None,
            reason,
            report.decode(),
        )
