"""Storage for legal holds (table ``legal_holds``, delta 0021) and the lock that orders them.

The interface other parts use (purge, erasure, ``bankhub keys shred``):

* :data:`HOLD_LOCK_KEY` — the transaction advisory lock that orders holds against the
  destruction of data. Placing a hold takes it EXCLUSIVE (:func:`lock_holds_exclusive_txn`)
  in the transaction that inserts it; every purge batch, erasure and shred takes it SHARED
  (:func:`lock_holds_shared_txn`) FIRST in its transaction, before it selects what to
  destroy. So a purge batch or a shred that started before a hold finishes first, and every
  one that starts later waits for the hold's commit and sees it: a hold applies from the
  moment its transaction commits. (Data destroyed before then is gone: a hold cannot
  bring it back.) Shared holders never wait for one another.
* :data:`HELD_MESSAGE_SQL` — a boolean SQL expression, true iff the message aliased ``m``
  (columns ``conversation_id``, ``created_at``) is held by an active hold. Embed it as
  ``... AND NOT (<HELD_MESSAGE_SQL>)``; it uses the aliases ``_lh`` and ``_ml`` only.
* :func:`holds_covering_conversation_txn` — the active holds that hold any message of a
  conversation: shredding and erasure refuse then, naming them.

A hold is ACTIVE while ``released_at IS NULL``; a requested release is still active until a
second compliance officer approves it. Holds are never deleted (a trigger refuses, and
``bankhub db grant-app-role`` gives the hub no DELETE on the table). The matching rule is
:func:`bankhub.compliance.holds.holds_message` in pure form; the two are tested together.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import msgspec

from .db import Conn, Database

__all__ = [
    "ConversationHeld",
    "HOLD_LOCK_KEY",
    "HELD_MESSAGE_SQL",
    "HoldRef",
    "HoldRow",
    "HoldStore",
    "lock_holds_shared_txn",
    "lock_holds_exclusive_txn",
    "holds_covering_conversation_txn",
]

# "bankhold" in ASCII: one key for all holds (a bigint; distinct from the migrator's "bankhub")
HOLD_LOCK_KEY = 0x62616E6B686F6C64

HELD_MESSAGE_SQL = """EXISTS (
    SELECT 1 FROM legal_holds _lh
    WHERE _lh.released_at IS NULL
      AND (_lh.conversation_id IS NULL OR _lh.conversation_id = m.conversation_id)
      AND (_lh.custodian_id IS NULL OR EXISTS (
            SELECT 1 FROM membership_log _ml
            WHERE _ml.conversation_id = m.conversation_id AND _ml.user_id = _lh.custodian_id))
      AND (_lh.from_at IS NULL OR m.created_at >= _lh.from_at)
      AND (_lh.to_at IS NULL OR m.created_at < _lh.to_at))"""
"""True iff the message ``m`` is held (see the module docstring)."""


class HoldRef(msgspec.Struct, frozen=True):
    """An active hold, as a refusal names it."""

    hold_id: str
    name: str
    case_ref: str | None


class HoldRow(msgspec.Struct, frozen=True):
    """A hold with the usernames of the people it names."""

    id: str
    name: str
    case_ref: str | None
    custodian_id: str | None
    custodian_username: str | None
    conversation_id: str | None
    from_at: dt.datetime | None
    to_at: dt.datetime | None
    created_by: str
    created_by_username: str
    created_at: dt.datetime
    release_requested_by: str | None
    release_requested_by_username: str | None
    release_requested_at: dt.datetime | None
    release_reason: str | None
    released_by: str | None
    released_by_username: str | None
    released_at: dt.datetime | None


async def lock_holds_shared_txn(conn: Conn) -> None:
    """Take :data:`HOLD_LOCK_KEY` shared until the transaction ends (purge, erasure, shred:
    call it first, before selecting what to destroy). Waits while a hold is being placed."""
    await conn.execute("SELECT pg_advisory_xact_lock_shared($1)", HOLD_LOCK_KEY)


async def lock_holds_exclusive_txn(conn: Conn) -> None:
    """Take :data:`HOLD_LOCK_KEY` exclusive until the transaction ends (placing a hold):
    waits for every purge batch, erasure and shred in flight to commit or roll back."""
    await conn.execute("SELECT pg_advisory_xact_lock($1)", HOLD_LOCK_KEY)


async def holds_covering_conversation_txn(conn: Conn, conversation_id: str | uuid.UUID) -> list[HoldRef]:
    """The active holds that hold at least one message of ``conversation_id`` (by the rule of
    :data:`HELD_MESSAGE_SQL`), oldest first. Call :func:`lock_holds_shared_txn` first in the
    same transaction, so no hold can be placed between this check and what the caller does."""
    cid = conversation_id if isinstance(conversation_id, uuid.UUID) else uuid.UUID(conversation_id)
    rows = await conn.fetch(
        """SELECT h.id, h.name, h.case_ref FROM legal_holds h
           WHERE h.released_at IS NULL
             AND (h.conversation_id IS NULL OR h.conversation_id = $1)
             AND (h.custodian_id IS NULL OR EXISTS (
                   SELECT 1 FROM membership_log l WHERE l.conversation_id = $1 AND l.user_id = h.custodian_id))
             AND EXISTS (
                   SELECT 1 FROM messages m WHERE m.conversation_id = $1
                     AND (h.from_at IS NULL OR m.created_at >= h.from_at)
                     AND (h.to_at IS NULL OR m.created_at < h.to_at))
           ORDER BY h.created_at, h.id""",
        cid,
    )
    return [HoldRef(hold_id=str(r["id"]), name=r["name"], case_ref=r["case_ref"]) for r in rows]


_SELECT = """SELECT h.id, h.name, h.case_ref, h.custodian_id, cu.username AS custodian_username, h.conversation_id,
                    h.from_at, h.to_at, h.created_by, cb.username AS created_by_username, h.created_at,
                    h.release_requested_by, rq.username AS release_requested_by_username, h.release_requested_at,
                    h.release_reason, h.released_by, rb.username AS released_by_username, h.released_at
             FROM legal_holds h
             JOIN users cb ON cb.id = h.created_by
             LEFT JOIN users cu ON cu.id = h.custodian_id
             LEFT JOIN users rq ON rq.id = h.release_requested_by
             LEFT JOIN users rb ON rb.id = h.released_by"""

# the list filter of each state (compliance.holds.hold_state in SQL)
_STATE_SQL = {
    "active": "h.released_at IS NULL AND h.release_requested_by IS NULL",
    "release_pending": "h.released_at IS NULL AND h.release_requested_by IS NOT NULL",
    "released": "h.released_at IS NOT NULL",
}


def _sid(value: Any) -> str | None:
    return None if value is None else str(value)


def _row(r: Any) -> HoldRow:
    return HoldRow(
        id=str(r["id"]),
        name=r["name"],
        case_ref=r["case_ref"],
        custodian_id=_sid(r["custodian_id"]),
        custodian_username=r["custodian_username"],
        conversation_id=_sid(r["conversation_id"]),
        from_at=r["from_at"],
        to_at=r["to_at"],
        created_by=str(r["created_by"]),
        created_by_username=r["created_by_username"],
        created_at=r["created_at"],
        release_requested_by=_sid(r["release_requested_by"]),
        release_requested_by_username=r["release_requested_by_username"],
        release_requested_at=r["release_requested_at"],
        release_reason=r["release_reason"],
        released_by=_sid(r["released_by"]),
        released_by_username=r["released_by_username"],
        released_at=r["released_at"],
    )


def _uid(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


class HoldStore:
    """Reads of holds, and the steps of the hold transactions (``*_txn``: the caller's
    transaction, which also writes the audit row)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    # --- steps inside the caller's transaction ----------------------------------------

    @staticmethod
    async def conversation_exists_txn(conn: Conn, conversation_id: str) -> bool:
        key = _uid(conversation_id)
        return key is not None and bool(await conn.fetchval("SELECT 1 FROM conversations WHERE id = $1", key))

    @staticmethod
    async def user_by_username_txn(conn: Conn, username: str) -> tuple[str, str] | None:
        """``(user id, username)`` of ``username`` (a custodian), or None."""
        row = await conn.fetchrow("SELECT id, username FROM users WHERE username = $1", username)
        return None if row is None else (str(row["id"]), row["username"])

    @staticmethod
    async def insert_txn(
        conn: Conn,
        *,
        name: str,
        case_ref: str | None,
        custodian_id: str | None,
        conversation_id: str | None,
        from_at: dt.datetime | None,
        to_at: dt.datetime | None,
        created_by: str,
    ) -> HoldRow:
        """Insert a hold (the caller holds :data:`HOLD_LOCK_KEY` exclusive); returns it."""
        hold_id = uuid.uuid4()
        await conn.execute(
            """INSERT INTO legal_holds (id, name, case_ref, custodian_id, conversation_id, from_at, to_at, created_by)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8)""",
            hold_id,
            name,
            case_ref,
            None if custodian_id is None else uuid.UUID(custodian_id),
            None if conversation_id is None else uuid.UUID(conversation_id),
            from_at,
            to_at,
            uuid.UUID(created_by),
        )
        row = await conn.fetchrow(_SELECT + " WHERE h.id = $1", hold_id)
        assert row is not None
        return _row(row)

    @staticmethod
    async def lock_txn(conn: Conn, hold_id: str) -> HoldRow | None:
        """The hold, row-locked until the transaction ends (a release decision); None if unknown."""
        key = _uid(hold_id)
        if key is None:
            return None
        if await conn.fetchval("SELECT 1 FROM legal_holds WHERE id = $1 FOR UPDATE", key) is None:
            return None
        row = await conn.fetchrow(_SELECT + " WHERE h.id = $1", key)
        assert row is not None
        return _row(row)

    @staticmethod
    async def request_release_txn(conn: Conn, hold_id: str, requested_by: str, reason: str) -> HoldRow:
        """Mark a locked active hold release-pending."""
        await conn.execute(
            """UPDATE legal_holds SET release_requested_by = $2, release_requested_at = clock_timestamp(), release_reason = $3
               WHERE id = $1 AND released_at IS NULL""",
            uuid.UUID(hold_id),
            uuid.UUID(requested_by),
            reason,
        )
        return await HoldStore._reread(conn, hold_id)

    @staticmethod
    async def clear_release_request_txn(conn: Conn, hold_id: str) -> HoldRow:
        """Return a locked release-pending hold to active (the request rejected or withdrawn)."""
        await conn.execute(
            """UPDATE legal_holds SET release_requested_by = NULL, release_requested_at = NULL, release_reason = NULL
               WHERE id = $1 AND released_at IS NULL""",
            uuid.UUID(hold_id),
        )
        return await HoldStore._reread(conn, hold_id)

    @staticmethod
    async def release_txn(conn: Conn, hold_id: str, released_by: str) -> HoldRow:
        """Release a locked release-pending hold (the second officer approved)."""
        await conn.execute(
            "UPDATE legal_holds SET released_by = $2, released_at = clock_timestamp() WHERE id = $1 AND released_at IS NULL",
            uuid.UUID(hold_id),
            uuid.UUID(released_by),
        )
        return await HoldStore._reread(conn, hold_id)

    @staticmethod
    async def _reread(conn: Conn, hold_id: str) -> HoldRow:
        row = await conn.fetchrow(_SELECT + " WHERE h.id = $1", uuid.UUID(hold_id))
        assert row is not None
        return _row(row)

    # --- reads ------------------------------------------------------------------------

    async def get(self, hold_id: str) -> HoldRow | None:
        key = _uid(hold_id)
        if key is None:
            return None
        async with self.db.connection("legal_hold_get") as conn:
            row = await conn.fetchrow(_SELECT + " WHERE h.id = $1", key)
        return None if row is None else _row(row)

    async def page(self, state: str | None, after: tuple[dt.datetime, str] | None, limit: int) -> list[HoldRow]:
        """Holds newest first (``created_at, id`` descending), of ``state`` if given, after the
        cursor key ``after`` (the last row of the previous page)."""
        where = [_STATE_SQL[state]] if state is not None else []
        args: list[Any] = []
        if after is not None:
            args += [after[0], uuid.UUID(after[1])]
            where.append(f"(h.created_at, h.id) < (${len(args) - 1}, ${len(args)})")
        args.append(limit)
        sql = _SELECT + (" WHERE " + " AND ".join(where) if where else "") + f" ORDER BY h.created_at DESC, h.id DESC LIMIT ${len(args)}"
        async with self.db.connection("legal_holds_page") as conn:
            rows = await conn.fetch(sql, *args)
        return [_row(r) for r in rows]


class ConversationHeld(Exception):
    """Destroying a conversation's data (crypto-shredding it) was refused: active legal holds
    hold messages of it. ``holds`` names them, oldest first; nothing was changed."""

    def __init__(self, conversation_id: str, holds: list[HoldRef]) -> None:
        self.conversation_id = conversation_id
        self.holds = holds
        names = ", ".join(f"{h.hold_id} ({h.name})" for h in holds)
        super().__init__(f"conversation {conversation_id} is under legal hold: {names}; a hold must be released first")
