"""Storage for eDiscovery exports (``exports``, schema 0023) and the reads that fill one.

An export row moves ``pending_approval`` → ``running`` (a second officer approved it) →
``ready`` | ``failed``, or ``pending_approval`` → ``rejected``; ``failed`` → ``running`` (a
retry); ``ready`` → ``expired`` (its retention passed: the wrapped key destroyed). A build
holds the row's lease (``build_token``, ``heartbeat_at``): its writes check the token. Each decision is a step of the
caller's transaction (:mod:`bankhub.actions.exports`) taken under the row's lock
(:meth:`ExportStore.lock_txn`), so two officers deciding at once cannot both win. The build
writes its progress here after every batch; the built zip lives in the blob store, sealed
under the row's own wrapped data key (:mod:`bankhub.compliance.export_sealing`).

The scope reads (conversations a custodian was ever in, membership history, people, notices)
are here too: all SQL of the export is in this module. Message bodies are read and opened
by :class:`~bankhub.storage.messages.MessageStore`, kept bodies by
:meth:`~bankhub.storage.revisions.RevisionStore.for_compliance`.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import Coroutine, Sequence
from typing import Any

import msgspec

from .db import Conn, Database

__all__ = ["ExportStore", "ExportRow", "StoredCopy", "ConversationRow", "StayRow", "PersonRow", "BLOB_PREFIX", "INTERRUPTED"]

BLOB_PREFIX = "exports"
INTERRUPTED = "interrupted: the build stopped (node shut down or lost); retry it"
"""The ``error`` of a build that stopped without finishing (a stale lease, a node's shutdown)."""

_COLS = """e.id, e.scope::text AS scope, e.reason, e.case_ref, e.requested_by, e.approved_by, e.rejected_by, e.state,
    e.progress_done, e.progress_total, e.bytes, e.sha256, e.counts::text AS counts, e.error, e.created_at, e.decided_at,
    e.started_at, e.finished_at, e.blob_key, e.key_id, e.kek_id, e.wrapped_dek, e.chunks, e.build_token, e.heartbeat_at,
    e.expired_at,
    ru.username AS requested_by_name, au.username AS approved_by_name, xu.username AS rejected_by_name"""
_FROM = """exports e JOIN users ru ON ru.id = e.requested_by LEFT JOIN users au ON au.id = e.approved_by
    LEFT JOIN users xu ON xu.id = e.rejected_by"""


class ExportRow(msgspec.Struct, gc=False):
    id: str
    scope: dict[str, Any]
    reason: str
    case_ref: str | None
    requested_by: str
    requested_by_name: str
    approved_by: str | None
    approved_by_name: str | None
    rejected_by: str | None
    rejected_by_name: str | None
    state: str
    progress_done: int
    progress_total: int
    size: int | None
    sha256: str | None
    counts: dict[str, int] | None
    error: str | None
    created_at: dt.datetime
    decided_at: dt.datetime | None
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    blob_key: str | None
    key_id: str | None
    kek_id: str | None
    wrapped_dek: bytes | None
    chunks: int | None = None
    build_token: str | None = None
    heartbeat_at: dt.datetime | None = None
    expired_at: dt.datetime | None = None


class StoredCopy(msgspec.Struct, frozen=True):
    """Where a sealed export lies: chunk blobs ``<prefix>/<n>`` for ``n < chunks``."""

    prefix: str
    chunks: int


class ConversationRow(msgspec.Struct, gc=False):
    id: str
    kind: str
    title: str | None
    created_at: dt.datetime


class StayRow(msgspec.Struct, gc=False):
    user_id: str
    username: str
    joined_at: dt.datetime
    left_at: dt.datetime | None


class PersonRow(msgspec.Struct, gc=False):
    id: str
    username: str
    display_name: str
    role: str
    disabled: bool


_scope = msgspec.json.Decoder(dict[str, Any])
_counts = msgspec.json.Decoder(dict[str, int])


def _opt(v: Any) -> str | None:
    return None if v is None else str(v)


def _row(r: Any) -> ExportRow:
    return ExportRow(
        id=str(r["id"]),
        scope=_scope.decode(r["scope"]),
        reason=r["reason"],
        case_ref=r["case_ref"],
        requested_by=str(r["requested_by"]),
        requested_by_name=r["requested_by_name"],
        approved_by=_opt(r["approved_by"]),
        approved_by_name=r["approved_by_name"],
        rejected_by=_opt(r["rejected_by"]),
        rejected_by_name=r["rejected_by_name"],
        state=r["state"],
        progress_done=r["progress_done"],
        progress_total=r["progress_total"],
        size=r["bytes"],
        sha256=r["sha256"],
        counts=None if r["counts"] is None else _counts.decode(r["counts"]),
        error=r["error"],
        created_at=r["created_at"],
        decided_at=r["decided_at"],
        started_at=r["started_at"],
        finished_at=r["finished_at"],
        blob_key=r["blob_key"],
        key_id=r["key_id"],
        kek_id=r["kek_id"],
        wrapped_dek=None if r["wrapped_dek"] is None else bytes(r["wrapped_dek"]),
        chunks=r["chunks"],
        build_token=_opt(r["build_token"]),
        heartbeat_at=r["heartbeat_at"],
        expired_at=r["expired_at"],
    )


def _uuid(text: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(text)
    except ValueError:
        return None


class ExportStore:
    def __init__(self, db: Database) -> None:
        self.db = db
        # the builds this node runs in the background (kept referenced until they end)
        self.tasks: set[asyncio.Task[Any]] = set()
        # one build at a time on this node (each holds a zip on disk and a chunk in memory);
        # the others wait, their rows `running` with a heartbeat and no build token yet
        self.build_slot = asyncio.Semaphore(1)

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run a build in the background on this node."""
        task = asyncio.get_running_loop().create_task(coro, name="export-build")
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    async def stop(self, timeout: float = 10.0) -> None:
        """Cancel this node's builds and wait for them to record it (``interrupted``)."""
        tasks = list(self.tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)

    # --- the request and its decisions -----------------------------------------------------

    @staticmethod
    async def insert_txn(conn: Conn, *, scope: dict[str, Any], reason: str, case_ref: str | None, requested_by: str) -> str:
        export_id = uuid.uuid4()
        await conn.execute(
            """INSERT INTO exports (id, scope, reason, case_ref, requested_by, state)
               VALUES ($1, $2::jsonb, $3, $4, $5, 'pending_approval')""",
            export_id, msgspec.json.encode(scope).decode(), reason, case_ref, uuid.UUID(requested_by),
        )
        return str(export_id)

    @staticmethod
    async def lock_txn(conn: Conn, export_id: str) -> ExportRow | None:
        """The row, locked for a decision (None: no such export)."""
        key = _uuid(export_id)
        if key is None:
            return None
        r = await conn.fetchrow(f"SELECT {_COLS} FROM {_FROM} WHERE e.id = $1 FOR UPDATE OF e", key)
        return None if r is None else _row(r)

    @staticmethod
    async def decide_txn(conn: Conn, export_id: str, *, approved_by: str | None = None, rejected_by: str | None = None) -> None:
        """Approve (→ ``running``, the build is due) or reject the locked pending row."""
        await conn.execute(
            """UPDATE exports SET state = CASE WHEN $2::uuid IS NOT NULL THEN 'running' ELSE 'rejected' END,
                      approved_by = $2, rejected_by = $3, decided_at = now()
               WHERE id = $1 AND state = 'pending_approval'""",
            uuid.UUID(export_id),
            None if approved_by is None else uuid.UUID(approved_by),
            None if rejected_by is None else uuid.UUID(rejected_by),
        )

    async def get(self, export_id: str, conn: Conn | None = None) -> ExportRow | None:
        key = _uuid(export_id)
        if key is None:
            return None
        sql = f"SELECT {_COLS} FROM {_FROM} WHERE e.id = $1"
        if conn is not None:
            r = await conn.fetchrow(sql, key)
        else:
            async with self.db.connection("export_get") as c:
                r = await c.fetchrow(sql, key)
        return None if r is None else _row(r)

    async def page(self, after: tuple[dt.datetime, str] | None, limit: int) -> list[ExportRow]:
        """Exports newest first, after the cursor key ``(created_at, id)``; ``limit`` rows at most
        (the HTTP list asks for one more than it shows, to know whether more follow)."""
        async with self.db.connection("export_page") as conn:
            rows = await conn.fetch(
                f"""SELECT {_COLS} FROM {_FROM}
                    WHERE $1::timestamptz IS NULL OR (e.created_at, e.id) < ($1, $2)
                    ORDER BY e.created_at DESC, e.id DESC LIMIT $3""",
                None if after is None else after[0],
                None if after is None else uuid.UUID(after[1]),
                limit,
            )
        return [_row(r) for r in rows]

    # --- the build ---------------------------------------------------------------------------

    @staticmethod
    async def start_txn(conn: Conn, export_id: str, token: str) -> None:
        """Claim the (locked) row for a build holding ``token``: the lease every later write checks."""
        await conn.execute(
            """UPDATE exports SET state = 'running', started_at = now(), finished_at = NULL, error = NULL,
                      progress_done = 0, progress_total = 0, build_token = $2, heartbeat_at = now()
               WHERE id = $1""",
            uuid.UUID(export_id), uuid.UUID(token),
        )

    async def progress(self, export_id: str, token: str, done: int, total: int) -> bool:
        """Save the progress of the build holding ``token`` (and its heartbeat); False: it no
        longer holds the lease (another build took over, or the row was marked interrupted)."""
        async with self.db.connection("export_progress") as conn:
            status = await conn.execute(
                """UPDATE exports SET progress_done = $3, progress_total = $4, heartbeat_at = now()
                   WHERE id = $1 AND build_token = $2 AND state = 'running'""",
                uuid.UUID(export_id), uuid.UUID(token), done, total,
            )
        return status.endswith(" 1")

    async def heartbeat(self, export_id: str, token: str | None) -> bool:
        """A sign of life of the build holding ``token`` (None: a build waiting for this node's
        build slot, not yet holding a lease); False: the row is no longer that build's."""
        async with self.db.connection("export_heartbeat") as conn:
            status = await conn.execute(
                """UPDATE exports SET heartbeat_at = now()
                   WHERE id = $1 AND state = 'running' AND build_token IS NOT DISTINCT FROM $2""",
                uuid.UUID(export_id), None if token is None else uuid.UUID(token),
            )
        return status.endswith(" 1")

    @staticmethod
    async def complete_txn(
        conn: Conn, export_id: str, *, token: str, blob_key: str, chunks: int, key_id: str, kek_id: str, wrapped_dek: bytes,
        size: int, sha256: str, counts: dict[str, int],
    ) -> tuple[bool, StoredCopy | None]:
        """Record the build holding ``token`` as ``ready``: ``(True, the copy it replaces)``
        (whose chunks the caller deletes after this commits), or ``(False, None)``: the build
        lost its lease and the row is untouched."""
        prev = await conn.fetchrow(
            "SELECT blob_key, chunks FROM exports WHERE id = $1 AND build_token = $2 AND state = 'running' FOR UPDATE",
            uuid.UUID(export_id), uuid.UUID(token),
        )
        if prev is None:
            return False, None
        await conn.execute(
            """UPDATE exports SET state = 'ready', finished_at = now(), blob_key = $3, chunks = $4, key_id = $5, kek_id = $6,
                      wrapped_dek = $7, bytes = $8, sha256 = $9, counts = $10::jsonb, progress_done = progress_total,
                      error = NULL, build_token = NULL, heartbeat_at = now()
               WHERE id = $1 AND build_token = $2""",
            uuid.UUID(export_id), uuid.UUID(token), blob_key, chunks, key_id, kek_id, wrapped_dek, size, sha256,
            msgspec.json.encode(counts).decode(),
        )
        old = None if prev["blob_key"] is None or prev["blob_key"] == blob_key else StoredCopy(prev["blob_key"], prev["chunks"] or 1)
        return True, old

    @staticmethod
    async def fail_txn(conn: Conn, export_id: str, error: str, token: str | None = None) -> bool:
        """Mark the build failed with a safe ``error``; with ``token`` only while that build
        still holds the lease (False: it did not, nothing changed)."""
        status = await conn.execute(
            """UPDATE exports SET state = 'failed', finished_at = now(), error = $2, build_token = NULL
               WHERE id = $1 AND ($3::uuid IS NULL OR (build_token = $3 AND state = 'running'))""",
            uuid.UUID(export_id), error, None if token is None else uuid.UUID(token),
        )
        return status.endswith(" 1")

    @staticmethod
    async def stale_txn(conn: Conn, stale_seconds: float, limit: int = 100) -> list[str]:
        """Mark ``running`` rows whose build showed no sign of life for ``stale_seconds``
        failed (:data:`INTERRUPTED`); the ids of those it marked."""
        rows = await conn.fetch(
            """UPDATE exports SET state = 'failed', finished_at = now(), error = $2, build_token = NULL
               WHERE id IN (SELECT id FROM exports
                            WHERE state = 'running'
                              AND COALESCE(heartbeat_at, decided_at, created_at) < now() - make_interval(secs => $1)
                            ORDER BY id LIMIT $3 FOR UPDATE SKIP LOCKED)
               RETURNING id""",
            float(stale_seconds), INTERRUPTED, limit,
        )
        return [str(r["id"]) for r in rows]

    @staticmethod
    async def lease_held_txn(conn: Conn, export_id: str, stale_seconds: float) -> bool:
        """Whether a build holds the (locked) row's lease and showed a sign of life within ``stale_seconds``."""
        return bool(
            await conn.fetchval(
                """SELECT build_token IS NOT NULL AND state = 'running' AND heartbeat_at > now() - make_interval(secs => $2)
                   FROM exports WHERE id = $1""",
                uuid.UUID(export_id), float(stale_seconds),
            )
        )

    @staticmethod
    async def fail_unclaimed_txn(conn: Conn, export_id: str, error: str) -> bool:
        """Mark a ``running`` row no build claimed yet failed (a queued build cancelled at shutdown)."""
        status = await conn.execute(
            """UPDATE exports SET state = 'failed', finished_at = now(), error = $2
               WHERE id = $1 AND state = 'running' AND build_token IS NULL""",
            uuid.UUID(export_id), error,
        )
        return status.endswith(" 1")

    @staticmethod
    async def retry_txn(conn: Conn, export_id: str) -> None:
        """A failed (locked) export is due again: ``running``, waiting for a build to claim it."""
        await conn.execute(
            """UPDATE exports SET state = 'running', error = NULL, finished_at = NULL, progress_done = 0, progress_total = 0,
                      build_token = NULL, heartbeat_at = now()
               WHERE id = $1 AND state = 'failed'""",
            uuid.UUID(export_id),
        )

    @staticmethod
    async def expire_txn(conn: Conn, retention_days: int, limit: int = 100) -> list[tuple[str, str, StoredCopy | None]]:
        """Expire ``ready`` exports finished more than ``retention_days`` ago: state ``expired``,
        the wrapped data key destroyed (the sealed chunks can never be opened again, even if a
        delete fails); ``(export id, reason, the copy to delete)`` of each."""
        rows = await conn.fetch(
            """WITH due AS (SELECT id, blob_key, chunks FROM exports
                            WHERE state = 'ready' AND finished_at < now() - make_interval(days => $1)
                            ORDER BY finished_at LIMIT $2 FOR UPDATE SKIP LOCKED)
               UPDATE exports e SET state = 'expired', expired_at = now(), kek_id = NULL, wrapped_dek = NULL
               FROM due WHERE e.id = due.id
               RETURNING e.id, e.reason, due.blob_key, due.chunks""",
            retention_days, limit,
        )
        return [
            (str(r["id"]), r["reason"], None if r["blob_key"] is None else StoredCopy(r["blob_key"], r["chunks"] or 1)) for r in rows
        ]

    # --- the scope -----------------------------------------------------------------------------

    async def users_by_name(self, usernames: Sequence[str]) -> dict[str, PersonRow]:
        async with self.db.connection("export_users") as conn:
            rows = await conn.fetch(
                "SELECT id, username, display_name, role, disabled FROM users WHERE username = ANY($1::text[])", list(usernames)
            )
        return {r["username"]: _person(r) for r in rows}

    async def existing_conversations(self, conversation_ids: Sequence[str]) -> set[str]:
        async with self.db.connection("export_conversations_exist") as conn:
            rows = await conn.fetch("SELECT id FROM conversations WHERE id = ANY($1::uuid[])", [uuid.UUID(c) for c in conversation_ids])
        return {str(r["id"]) for r in rows}

    async def conversations(self, custodian_ids: Sequence[str], conversation_ids: Sequence[str]) -> list[ConversationRow]:
        """The conversations named, and every conversation any custodian was ever a member of."""
        async with self.db.connection("export_scope_conversations") as conn:
            rows = await conn.fetch(
                """SELECT c.id, c.kind, c.title, c.created_at FROM conversations c
                   WHERE c.id = ANY($2::uuid[])
                      OR EXISTS (SELECT 1 FROM membership_log l WHERE l.conversation_id = c.id AND l.user_id = ANY($1::uuid[]))
                   ORDER BY c.id""",
                [uuid.UUID(u) for u in custodian_ids],
                [uuid.UUID(c) for c in conversation_ids],
            )
        return [ConversationRow(str(r["id"]), r["kind"], r["title"], r["created_at"]) for r in rows]

    async def membership(self, conversation_id: str) -> list[StayRow]:
        async with self.db.connection("export_membership") as conn:
            rows = await conn.fetch(
                """SELECT l.user_id, u.username, l.joined_at, l.left_at FROM membership_log l JOIN users u ON u.id = l.user_id
                   WHERE l.conversation_id = $1 ORDER BY l.joined_at, l.id""",
                uuid.UUID(conversation_id),
            )
        return [StayRow(str(r["user_id"]), r["username"], r["joined_at"], r["left_at"]) for r in rows]

    async def people(self, user_ids: Sequence[str]) -> dict[str, PersonRow]:
        async with self.db.connection("export_people") as conn:
            rows = await conn.fetch(
                "SELECT id, username, display_name, role, disabled FROM users WHERE id = ANY($1::uuid[])",
                [uuid.UUID(u) for u in user_ids],
            )
        return {str(r["id"]): _person(r) for r in rows}

    async def seq_bounds(
        self, conversation_ids: Sequence[str], since: dt.datetime | None, until: dt.datetime | None
    ) -> dict[str, tuple[int, int, int]]:
        """Per conversation with messages in ``[since, until)``: ``(first seq, last seq, count)``."""
        async with self.db.connection("export_seq_bounds") as conn:
            rows = await conn.fetch(
                """SELECT conversation_id, min(seq) AS lo, max(seq) AS hi, count(*) AS n FROM messages
                   WHERE conversation_id = ANY($1::uuid[])
                     AND ($2::timestamptz IS NULL OR created_at >= $2) AND ($3::timestamptz IS NULL OR created_at < $3)
                   GROUP BY conversation_id""",
                [uuid.UUID(c) for c in conversation_ids], since, until,
            )
        return {str(r["conversation_id"]): (r["lo"], r["hi"], r["n"]) for r in rows}

    async def created_at(self, conversation_id: str, after_seq: int, upto_seq: int) -> dict[str, dt.datetime]:
        """The exact commit times (microseconds; a message carries milliseconds) of the messages
        with ``after_seq < seq <= upto_seq``, by message id."""
        async with self.db.connection("export_created_at") as conn:
            rows = await conn.fetch(
                "SELECT id, created_at FROM messages WHERE conversation_id = $1 AND seq > $2 AND seq <= $3",
                uuid.UUID(conversation_id), after_seq, upto_seq,
            )
        return {str(r["id"]): r["created_at"] for r in rows}

    async def notices(self, user_ids: Sequence[str], since: dt.datetime | None, until: dt.datetime | None, limit: int) -> list[dict[str, Any]]:
        """Published notices of accounts a custodian follows that targeted them (the rule of
        :mod:`bankhub.targeting`), published in ``[since, until)`` and at or after the custodian
        began following the account (what reached them); one row per notice and custodian,
        ``limit`` rows at most."""
        async with self.db.connection("export_notices") as conn:
            rows = await conn.fetch(
                """WITH me AS (
                       SELECT u.id, u.username, u.tags, u.segment, u.role,
                              ARRAY(WITH RECURSIVE up(id, parent_id) AS (
                                        SELECT o.id, o.parent_id FROM orgs o WHERE o.id = u.org_id
                                        UNION ALL SELECT o.id, o.parent_id FROM orgs o JOIN up ON o.id = up.parent_id)
                                    SELECT id FROM up) AS path
                       FROM users u WHERE u.id = ANY($1::uuid[]))
                   SELECT n.id, n.account_id, a.handle, a.name, n.seq, n.status, n.kind, n.body::text AS body,
                          n.published_at, n.recalled_at, n.recall_reason, n.signature::text AS signature,
                          me.id AS user_id, me.username, f.followed_at
                   FROM me JOIN account_follows f ON f.user_id = me.id
                   JOIN notices n ON n.account_id = f.account_id AND n.seq IS NOT NULL
                   JOIN official_accounts a ON a.id = n.account_id
                   WHERE ($2::timestamptz IS NULL OR n.published_at >= $2) AND ($3::timestamptz IS NULL OR n.published_at < $3)
                     AND n.published_at >= f.followed_at
                     AND (n.target_org_ids IS NULL OR n.target_org_ids && me.path)
                     AND (n.target_tags IS NULL OR n.target_tags && me.tags)
                     AND (n.target_segments IS NULL OR me.segment = ANY (n.target_segments))
                     AND (NOT n.staff_only OR me.role <> 'customer')
                   ORDER BY n.published_at, n.id, me.username LIMIT $4""",
                [uuid.UUID(u) for u in user_ids], since, until, limit,
            )
        return [dict(r) for r in rows]


def _person(r: Any) -> PersonRow:
    return PersonRow(str(r["id"]), r["username"], r["display_name"], r["role"], bool(r["disabled"]))
