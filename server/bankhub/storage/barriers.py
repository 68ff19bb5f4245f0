"""Storage for information barriers (tables ``barrier_segments``, ``barrier_members``,
``barrier_policies``, and the SQL function ``barrier_separates``; delta 0024).

Officers' changes are ``*_txn`` steps of the caller's transaction
(:mod:`bankhub.actions.barriers` opens it, decides with :mod:`bankhub.policy`, writes,
audits). :meth:`BarrierStore.lock_txn` serialises them (one transaction-scoped advisory
lock), so the caps (:data:`~bankhub.compliance.barriers.MAX_SEGMENTS` ...) counted under it
hold.

Enforcement reads the facts inside the changing transaction of every path where two people
could communicate: :meth:`BarrierStore.facts_txn` (each user's segment names and the
policies between them; :func:`bankhub.compliance.barriers.barred` decides),
:meth:`BarrierStore.barred_txn` (the send path: one query per batch), and
:data:`NOT_SEPARATED_SQL` for directory queries, which omit barred users in SQL so that
keyset paging stays exact. Every read returns at once when no policy exists. Every
enforcement read takes the barrier lock shared first (:func:`read_lock_txn`, or with the
transaction's ``BEGIN``: the group commit's ``shared_locks``, which then skips the barrier
query while no policy exists), so an officer's change, which holds it exclusively until
commit, applies from its commit on exactly.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable, Sequence
from typing import Any

import msgspec

from ..compliance.barriers import NO_FACTS, BarrierFacts
from .db import Conn, Database

__all__ = [
    "BarrierStore",
    "SegmentRow",
    "SegmentMemberRow",
    "PolicyRow",
    "NOT_SEPARATED_SQL",
    "BARRIER_LOCK_KEY",
    "read_lock_txn",
]

BARRIER_LOCK_KEY = 0x6261727269657273  # "barriers": serialises officers' changes
"""The advisory lock key taken by every change of segments, members and policies."""


def NOT_SEPARATED_SQL(viewer: str, user: str) -> str:  # noqa: N802 - an SQL fragment, named like one
    """The SQL condition "no barrier separates ``viewer`` from ``user``" (both SQL
    expressions of type uuid; ``viewer`` may be NULL: nobody is filtered).

    ``barrier_separates`` is a function call per row; the guard in front of it (is there
    any policy, is the viewer in any segment) is evaluated once per query for a parameter
    ``viewer`` (uncorrelated sub-selects), so a directory or a presence fan-out pays nothing
    per row while no policy can apply to the viewer."""
    return (
        f"({viewer} IS NULL OR NOT (EXISTS (SELECT 1 FROM barrier_policies)"
        f" AND EXISTS (SELECT 1 FROM barrier_members bm_v WHERE bm_v.user_id = {viewer})"
        f" AND barrier_separates({viewer}, {user})))"
    )


async def read_lock_txn(conn: Conn) -> None:
    """Take the barrier lock shared until the transaction ends: an officer's change (which
    holds it exclusively until commit) either committed before this, and the next statement
    (a fresh snapshot under READ COMMITTED) sees it, or waits until this transaction ends —
    so a policy applies from its commit on, never to a check that read around it. Every
    enforcement read inside a changing transaction takes it first, in its own statement."""
    await conn.execute("SELECT pg_advisory_xact_lock_shared($1)", BARRIER_LOCK_KEY)


class SegmentRow(msgspec.Struct, frozen=True):
    id: str
    name: str
    title: str
    members: int
    created_by: str  # username
    created_at: dt.datetime


class SegmentMemberRow(msgspec.Struct, frozen=True):
    user_id: str
    username: str
    display_name: str
    added_at: dt.datetime


class PolicyRow(msgspec.Struct, frozen=True):
    id: str
    a: str  # segment name (a < b by name)
    b: str
    created_by: str  # username
    created_at: dt.datetime


def _uuid(value: str) -> uuid.UUID:
    return uuid.UUID(value)


def _segment(r: Any) -> SegmentRow:
    return SegmentRow(
        id=str(r["id"]), name=r["name"], title=r["title"], members=int(r["members"]), created_by=r["created_by"] or "",
        created_at=r["created_at"],
    )


def _policy(r: Any) -> PolicyRow:
    a, b = sorted((r["a"], r["b"]))
    return PolicyRow(id=str(r["id"]), a=a, b=b, created_by=r["created_by"] or "", created_at=r["created_at"])


_SEGMENT_SELECT = """SELECT s.id, s.name, s.title, s.created_at, u.username AS created_by,
                            (SELECT count(*) FROM barrier_members m WHERE m.segment_id = s.id) AS members
                     FROM barrier_segments s LEFT JOIN users u ON u.id = s.created_by"""
_POLICY_SELECT = """SELECT p.id, sa.name AS a, sb.name AS b, p.created_at, u.username AS created_by
                    FROM barrier_policies p
                    JOIN barrier_segments sa ON sa.id = p.segment_a
                    JOIN barrier_segments sb ON sb.id = p.segment_b
                    LEFT JOIN users u ON u.id = p.created_by"""


class BarrierStore:
    """See the module docstring. Reads for officers' lists run on their own connection."""

    def __init__(self, db: Database) -> None:
        self.db = db

    # --- officers' changes (steps of the caller's transaction) ---------------------------

    @staticmethod
    async def lock_txn(conn: Conn) -> None:
        """Serialise barrier changes until the transaction ends."""
        await conn.execute("SELECT pg_advisory_xact_lock($1)", BARRIER_LOCK_KEY)

    @staticmethod
    async def count_segments_txn(conn: Conn) -> int:
        return int(await conn.fetchval("SELECT count(*) FROM barrier_segments"))

    @staticmethod
    async def count_policies_txn(conn: Conn) -> int:
        return int(await conn.fetchval("SELECT count(*) FROM barrier_policies"))

    @staticmethod
    async def segments_of_user_txn(conn: Conn, user_id: str) -> int:
        return int(await conn.fetchval("SELECT count(*) FROM barrier_members WHERE user_id = $1", _uuid(user_id)))

    @staticmethod
    async def segment_txn(conn: Conn, name: str) -> SegmentRow | None:
        row = await conn.fetchrow(_SEGMENT_SELECT + " WHERE s.name = $1", name)
        return None if row is None else _segment(row)

    @staticmethod
    async def create_segment_txn(conn: Conn, name: str, title: str, created_by: str) -> SegmentRow | None:
        """The new segment, or None when one of that name exists."""
        row = await conn.fetchrow(
            """INSERT INTO barrier_segments (id, name, title, created_by) VALUES ($1, $2, $3, $4)
               ON CONFLICT (name) DO NOTHING RETURNING id""",
            uuid.uuid4(),
            name,
            title,
            _uuid(created_by),
        )
        return None if row is None else await BarrierStore.segment_txn(conn, name)

    @staticmethod
    async def is_member_txn(conn: Conn, segment_id: str, user_id: str) -> bool:
        return bool(
            await conn.fetchval(
                "SELECT EXISTS (SELECT 1 FROM barrier_members WHERE segment_id = $1 AND user_id = $2)",
                _uuid(segment_id),
                _uuid(user_id),
            )
        )

    @staticmethod
    async def opposed_segments_of_txn(conn: Conn, segment_id: str, user_id: str) -> list[str]:
        """The names of the user's segments that a policy separates from ``segment_id``
        (putting the user in it would bar them from themselves and their own segment-mates)."""
        rows = await conn.fetch(
            """SELECT s.name FROM barrier_members m JOIN barrier_segments s ON s.id = m.segment_id
               JOIN barrier_policies p ON (p.segment_a = m.segment_id AND p.segment_b = $1)
                                       OR (p.segment_b = m.segment_id AND p.segment_a = $1)
               WHERE m.user_id = $2 ORDER BY s.name""",
            _uuid(segment_id),
            _uuid(user_id),
        )
        return [r["name"] for r in rows]

    @staticmethod
    async def in_both_txn(conn: Conn, segment_a: str, segment_b: str) -> int:
        """How many users are in both segments (a policy between them would bar those users
        from themselves)."""
        return int(
            await conn.fetchval(
                """SELECT count(*) FROM barrier_members a JOIN barrier_members b ON b.user_id = a.user_id
                   WHERE a.segment_id = $1 AND b.segment_id = $2""",
                _uuid(segment_a),
                _uuid(segment_b),
            )
        )

    @staticmethod
    async def policy_between_txn(conn: Conn, segment_a: str, segment_b: str) -> PolicyRow | None:
        a, b = sorted((_uuid(segment_a), _uuid(segment_b)))
        row = await conn.fetchrow(_POLICY_SELECT + " WHERE p.segment_a = $1 AND p.segment_b = $2", a, b)
        return None if row is None else _policy(row)

    @staticmethod
    async def add_member_txn(conn: Conn, segment_id: str, user_id: str, added_by: str) -> bool:
        """Put the user in the segment; False when they were in it already."""
        status = await conn.execute(
            """INSERT INTO barrier_members (segment_id, user_id, added_by) VALUES ($1, $2, $3)
               ON CONFLICT DO NOTHING""",
            _uuid(segment_id),
            _uuid(user_id),
            _uuid(added_by),
        )
        return status != "INSERT 0 0"

    @staticmethod
    async def remove_member_txn(conn: Conn, segment_id: str, user_id: str) -> bool:
        """Take the user out of the segment; False when they were not in it."""
        status = await conn.execute(
            "DELETE FROM barrier_members WHERE segment_id = $1 AND user_id = $2", _uuid(segment_id), _uuid(user_id)
        )
        return status != "DELETE 0"

    @staticmethod
    async def add_policy_txn(conn: Conn, segment_a: str, segment_b: str, created_by: str) -> tuple[PolicyRow, bool]:
        """The policy between the two segments (ids) and whether it is new (one row per
        unordered pair: the lower id is stored as ``segment_a``)."""
        a, b = sorted((_uuid(segment_a), _uuid(segment_b)))
        inserted = await conn.fetchval(
            """INSERT INTO barrier_policies (id, segment_a, segment_b, created_by) VALUES ($1, $2, $3, $4)
               ON CONFLICT (segment_a, segment_b) DO NOTHING RETURNING id""",
            uuid.uuid4(),
            a,
            b,
            _uuid(created_by),
        )
        row = await conn.fetchrow(_POLICY_SELECT + " WHERE p.segment_a = $1 AND p.segment_b = $2", a, b)
        assert row is not None  # inserted, or there already (under the barrier lock)
        return _policy(row), inserted is not None

    @staticmethod
    async def remove_policy_txn(conn: Conn, policy_id: str) -> PolicyRow | None:
        """Delete the policy; the row it was, or None when there is none."""
        row = await conn.fetchrow(_POLICY_SELECT + " WHERE p.id = $1", _uuid(policy_id))
        if row is None:
            return None
        await conn.execute("DELETE FROM barrier_policies WHERE id = $1", _uuid(policy_id))
        return _policy(row)

    # --- officers' lists -----------------------------------------------------------------

    async def segments_page(self, *, after: str | None, limit: int) -> list[SegmentRow]:
        """Up to ``limit`` segments by name, after the name ``after``."""
        async with self.db.connection("barrier_segments_list") as conn:
            rows = await conn.fetch(
                _SEGMENT_SELECT + " WHERE ($1::text IS NULL OR s.name > $1) ORDER BY s.name LIMIT $2", after, limit
            )
        return [_segment(r) for r in rows]

    async def segment(self, name: str) -> SegmentRow | None:
        async with self.db.connection("barrier_segment") as conn:
            return await self.segment_txn(conn, name)

    async def members_page(self, segment_id: str, *, after: str | None, limit: int) -> list[SegmentMemberRow]:
        """Up to ``limit`` members of the segment by username, after the username ``after``."""
        async with self.db.connection("barrier_members_list") as conn:
            rows = await conn.fetch(
                """SELECT u.id, u.username, u.display_name, m.added_at
                   FROM barrier_members m JOIN users u ON u.id = m.user_id
                   WHERE m.segment_id = $1 AND ($2::text IS NULL OR u.username > $2)
                   ORDER BY u.username LIMIT $3""",
                _uuid(segment_id),
                after,
                limit,
            )
        return [
            SegmentMemberRow(user_id=str(r["id"]), username=r["username"], display_name=r["display_name"], added_at=r["added_at"])
            for r in rows
        ]

    async def policies_page(self, *, after: tuple[dt.datetime, uuid.UUID] | None, limit: int) -> list[PolicyRow]:
        """Up to ``limit`` policies, oldest first, after the key ``(created_at, id)``."""
        async with self.db.connection("barrier_policies_list") as conn:
            rows = await conn.fetch(
                _POLICY_SELECT
                + """ WHERE ($1::timestamptz IS NULL OR (p.created_at, p.id) > ($1::timestamptz, $2::uuid))
                      ORDER BY p.created_at, p.id LIMIT $3""",
                None if after is None else after[0],
                None if after is None else after[1],
                limit,
            )
        return [_policy(r) for r in rows]

    # --- enforcement ---------------------------------------------------------------------

    @staticmethod
    async def facts_txn(conn: Conn, user_ids: Iterable[str]) -> BarrierFacts:
        """The segment names of each of ``user_ids`` and the policies among their segments,
        in the caller's transaction. Empty (one cheap query) when no policy exists."""
        ids = sorted({_uuid(u) for u in user_ids})
        if not ids:
            return NO_FACTS
        await read_lock_txn(conn)
        rows = await conn.fetch(
            """SELECT m.user_id, s.name FROM barrier_members m JOIN barrier_segments s ON s.id = m.segment_id
               WHERE m.user_id = ANY($1::uuid[]) AND EXISTS (SELECT 1 FROM barrier_policies)""",
            ids,
        )
        if not rows:
            return NO_FACTS
        segments: dict[str, set[str]] = {}
        for r in rows:
            segments.setdefault(str(r["user_id"]), set()).add(r["name"])
        names = sorted({n for s in segments.values() for n in s})
        pairs = await conn.fetch(
            """SELECT sa.name AS a, sb.name AS b FROM barrier_policies p
               JOIN barrier_segments sa ON sa.id = p.segment_a JOIN barrier_segments sb ON sb.id = p.segment_b
               WHERE sa.name = ANY($1::text[]) AND sb.name = ANY($1::text[])""",
            names,
        )
        return BarrierFacts(
            segments={u: frozenset(s) for u, s in segments.items()},
            policies=frozenset(frozenset((p["a"], p["b"])) for p in pairs),
        )

    async def facts(self, user_ids: Iterable[str]) -> BarrierFacts:
        """:meth:`facts_txn` on a connection of its own."""
        async with self.db.connection("barrier_facts") as conn:
            return await self.facts_txn(conn, user_ids)

    @staticmethod
    async def barred_txn(conn: Conn, pairs: Sequence[tuple[str, str]], *, locked: bool = False) -> set[tuple[str, str]]:
        """Of the ``(conversation_id, sender_id)`` pairs, those where a barrier policy
        separates the sender from any current member of the conversation who is not
        disabled (a disabled account reads nothing, so it silences nobody): one query for
        the whole batch, under the shared barrier lock (:func:`read_lock_txn`).

        Set-based, from the sender's side: the sender's segments, the policies naming them,
        the other sides' members, then a primary-key probe of ``conversation_members`` —
        no per-member function call, so a large group costs what the other side of the
        wall holds, and nothing but an index probe when the sender is in no segment.

        ``locked``: the transaction took the shared barrier lock already (with its ``BEGIN``,
        ``shared_locks=(BARRIER_LOCK_KEY,)``, as the group commit does)."""
        if not pairs:
            return set()
        if not locked:
            await read_lock_txn(conn)
        rows = await conn.fetch(
            """SELECT DISTINCT p.conversation_id, p.sender_id
               FROM unnest($1::uuid[], $2::uuid[]) AS p(conversation_id, sender_id)
               JOIN barrier_members ms ON ms.user_id = p.sender_id
               CROSS JOIN LATERAL (SELECT bp.segment_b AS other FROM barrier_policies bp WHERE bp.segment_a = ms.segment_id
                                   UNION ALL
                                   SELECT bp.segment_a FROM barrier_policies bp WHERE bp.segment_b = ms.segment_id) o
               WHERE EXISTS (SELECT 1 FROM barrier_members mo
                             JOIN conversation_members cm ON cm.conversation_id = p.conversation_id AND cm.user_id = mo.user_id
                             JOIN users u ON u.id = mo.user_id
                             WHERE mo.segment_id = o.other AND mo.user_id <> p.sender_id AND NOT u.disabled)""",
            [_uuid(c) for c, _ in pairs],
            [_uuid(s) for _, s in pairs],
        )
        return {(str(r["conversation_id"]), str(r["sender_id"])) for r in rows}

    @staticmethod
    async def agents_barred_txn(
        conn: Conn, sessions: Sequence[tuple[str, str]], agent_ids: Sequence[str], *, also: Sequence[str] = ()
    ) -> dict[str, set[str]]:
        """For service-desk routing and transfers: each ``(session_id, customer_id)``'s
        agents, among ``agent_ids``, that a barrier policy separates from anyone whose words
        the next agent reads — the customer, every agent the session was assigned to, every
        author of its notes, and ``also`` (e.g. the person transferring, whose note is about
        to be written). One query under the shared barrier lock; empty at once when no
        policy exists."""
        if not sessions or not agent_ids:
            return {}
        await read_lock_txn(conn)
        rows = await conn.fetch(
            """WITH s(session_id, customer_id) AS (SELECT * FROM unnest($1::uuid[], $2::uuid[])),
                    principals AS (
                        SELECT s.session_id, s.customer_id AS user_id FROM s
                        UNION SELECT s.session_id, x.user_id FROM s, unnest($4::uuid[]) AS x(user_id)
                        UNION SELECT s.session_id, sa.agent_id FROM s JOIN service_assignments sa ON sa.session_id = s.session_id
                        UNION SELECT s.session_id, n.author_id FROM s JOIN service_notes n ON n.session_id = s.session_id)
               SELECT DISTINCT p.session_id, a.agent_id
               FROM principals p, unnest($3::uuid[]) AS a(agent_id)
               WHERE EXISTS (SELECT 1 FROM barrier_policies)
                 AND p.user_id <> a.agent_id
                 AND EXISTS (SELECT 1 FROM barrier_members WHERE user_id = p.user_id)
                 AND barrier_separates(p.user_id, a.agent_id)""",
            [_uuid(sid) for sid, _ in sessions],
            [_uuid(cid) for _, cid in sessions],
            [_uuid(a) for a in agent_ids],
            [_uuid(a) for a in also],
        )
        out: dict[str, set[str]] = {}
        for r in rows:
            out.setdefault(str(r["session_id"]), set()).add(str(r["agent_id"]))
        return out

    @staticmethod
    async def separated_from_txn(conn: Conn, user_id: str, others: Sequence[str]) -> set[str]:
        """Which of ``others`` a barrier separates from ``user_id`` (typing, receipts)."""
        if not others:
            return set()
        await read_lock_txn(conn)
        rows = await conn.fetch(
            """SELECT o FROM unnest($2::uuid[]) AS o
               WHERE EXISTS (SELECT 1 FROM barrier_members WHERE user_id = $1) AND barrier_separates($1, o)""",
            _uuid(user_id),
            [_uuid(o) for o in others],
        )
        return {str(r["o"]) for r in rows}

    async def separated_from(self, user_id: str, others: Sequence[str]) -> set[str]:
        """:meth:`separated_from_txn` on a connection of its own."""
        async with self.db.connection("barrier_separated") as conn:
            return await self.separated_from_txn(conn, user_id, others)
