"""Storage for groups: roles of members, titles, and org groups (``conversations.org_id``).

Every change of a group's membership runs in the caller's transaction after
:meth:`GroupStore.lock`, which locks the group's ``conversations`` row: changes of one
group are serialised (a size cap checked under the lock holds), and they serialise with
sends into it too (the group committer locks the same row), so a removed member's send
either commits before the removal or is refused after it.

An org group's members are the active staff (every role but ``customer``) of its org and
of every org below it; :meth:`GroupStore.reconcile_group_txn` and
:meth:`GroupStore.reconcile_user_txn` make the rows say so and return what they changed.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import msgspec

from ..models import User
from .db import Conn, Database
from .users import _USER_COLS, user_from_row

__all__ = ["GroupRow", "MemberRow", "GroupStore"]

_STAFF = "u.role <> 'customer' AND NOT u.disabled"
# the orgs at or below the group's org
_SUBTREE = """WITH RECURSIVE sub(id) AS (
                  SELECT $1::uuid UNION SELECT o.id FROM orgs o JOIN sub ON o.parent_id = sub.id)"""


class GroupRow(msgspec.Struct, frozen=True):
    """A group's facts: the policy decides on ``org_id``/``org_path`` (org group or not)."""

    id: str
    title: str | None
    created_by: str
    org_id: str | None
    org_code: str | None
    members: int


class MemberRow(msgspec.Struct, frozen=True):
    """One member as the member list shows them (never more than a name and a role)."""

    user_id: str
    username: str
    display_name: str
    role: str
    joined_at: int  # ms


def _uuids(ids: Sequence[str]) -> list[uuid.UUID]:
    return [uuid.UUID(i) for i in ids]


class GroupStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    # --- reads ---------------------------------------------------------------------------------

    @staticmethod
    def _row(r: Any) -> GroupRow:
        return GroupRow(
            id=str(r["id"]),
            title=r["title"],
            created_by=str(r["created_by"]),
            org_id=None if r["org_id"] is None else str(r["org_id"]),
            org_code=r["org_code"],
            members=int(r["members"]),
        )

    _GROUP = """SELECT c.id, c.title, c.created_by, c.org_id, o.code AS org_code,
                       (SELECT count(*) FROM conversation_members m WHERE m.conversation_id = c.id) AS members
                FROM conversations c LEFT JOIN orgs o ON o.id = c.org_id
                WHERE c.id = $1 AND c.kind = 'group'"""

    async def group(self, conversation_id: str) -> GroupRow | None:
        """The group ``conversation_id`` (None: no such group, or not a group)."""
        try:
            conv = uuid.UUID(conversation_id)
        except ValueError:
            return None
        async with self.db.connection("group_get") as conn:
            r = await conn.fetchrow(self._GROUP, conv)
        return None if r is None else self._row(r)

    @classmethod
    async def lock(cls, conn: Conn, conversation_id: str) -> GroupRow | None:
        """The group, its ``conversations`` row locked until the caller's transaction ends."""
        conv = uuid.UUID(conversation_id)
        if await conn.fetchval("SELECT 1 FROM conversations WHERE id = $1 AND kind = 'group' FOR UPDATE", conv) is None:
            return None
        r = await conn.fetchrow(cls._GROUP, conv)
        return None if r is None else cls._row(r)

    @staticmethod
    async def role_of(conn: Conn, conversation_id: str, user_id: str) -> str | None:
        """The user's role in the conversation (None: not a member)."""
        role: str | None = await conn.fetchval(
            "SELECT role FROM conversation_members WHERE conversation_id = $1 AND user_id = $2",
            uuid.UUID(conversation_id),
            uuid.UUID(user_id),
        )
        return role

    @staticmethod
    async def member_ids(conn: Conn, conversation_id: str) -> list[str]:
        rows = await conn.fetch("SELECT user_id FROM conversation_members WHERE conversation_id = $1", uuid.UUID(conversation_id))
        return [str(r["user_id"]) for r in rows]

    @staticmethod
    async def staff_members(conn: Conn, conversation_id: str) -> list[User]:
        """The members who are bank staff (every role but ``customer``, disabled ones too),
        read in the caller's transaction: who a customer joining the group would reach.
        Bounded by the group's size cap."""
        rows = await conn.fetch(
            f"""SELECT {", ".join("u." + c.strip() for c in _USER_COLS.split(","))}
                FROM conversation_members m JOIN users u ON u.id = m.user_id
                WHERE m.conversation_id = $1 AND u.role <> 'customer' ORDER BY u.id""",
            uuid.UUID(conversation_id),
        )
        return [user_from_row(r) for r in rows]

    async def members_page(
        self, conversation_id: str, *, after: tuple[int, str] | None, limit: int
    ) -> list[tuple[MemberRow, tuple[int, str]]]:
        """Up to ``limit`` members in join order after the key ``(joined_at ms, user_id)``."""
        async with self.db.connection("group_members_page") as conn:
            rows = await conn.fetch(
                """SELECT m.user_id, u.username, u.display_name, m.role,
                          (extract(epoch FROM m.joined_at) * 1000)::bigint AS joined_ms
                   FROM conversation_members m JOIN users u ON u.id = m.user_id
                   WHERE m.conversation_id = $1
                     AND ($2::bigint IS NULL
                          OR ((extract(epoch FROM m.joined_at) * 1000)::bigint, m.user_id) > ($2::bigint, $3::uuid))
                   ORDER BY joined_ms, m.user_id LIMIT $4""",
                uuid.UUID(conversation_id),
                None if after is None else after[0],
                None if after is None else uuid.UUID(after[1]),
                limit,
            )
        return [
            (
                MemberRow(str(r["user_id"]), r["username"], r["display_name"], r["role"], int(r["joined_ms"])),
                (int(r["joined_ms"]), str(r["user_id"])),
            )
            for r in rows
        ]

    # --- writes (the caller's transaction, after :meth:`lock`) ------------------------------------

    @staticmethod
    async def create_txn(conn: Conn, creator_id: str, title: str, member_ids: Sequence[str], org_id: str | None = None) -> str:
        """A new group. A hand-made group: ``creator_id`` its owner, ``member_ids`` members.
        An org group (``org_id``): no members here (:meth:`reconcile_group_txn` adds them)."""
        conv = uuid.uuid4()
        await conn.execute(
            "INSERT INTO conversations (id, kind, title, created_by, org_id) VALUES ($1, 'group', $2, $3, $4)",
            conv,
            title,
            uuid.UUID(creator_id),
            None if org_id is None else uuid.UUID(org_id),
        )
        if org_id is None:
            others = [m for m in dict.fromkeys(member_ids) if m != creator_id]
            await conn.executemany(
                "INSERT INTO conversation_members (conversation_id, user_id, role) VALUES ($1, $2, $3)",
                [(conv, uuid.UUID(creator_id), "owner")] + [(conv, uuid.UUID(m), "member") for m in others],
            )
        return str(conv)

    @staticmethod
    async def add_txn(conn: Conn, conversation_id: str, user_ids: Sequence[str]) -> list[str]:
        """Add members (role ``member``); returns those not members before."""
        rows = await conn.fetch(
            """INSERT INTO conversation_members (conversation_id, user_id, role)
               SELECT $1, u, 'member' FROM unnest($2::uuid[]) AS u
               ON CONFLICT DO NOTHING RETURNING user_id""",
            uuid.UUID(conversation_id),
            _uuids(user_ids),
        )
        return [str(r["user_id"]) for r in rows]

    @staticmethod
    async def remove_txn(conn: Conn, conversation_id: str, user_id: str) -> bool:
        """Remove a member; False if they were not one."""
        done = await conn.fetchval(
            "DELETE FROM conversation_members WHERE conversation_id = $1 AND user_id = $2 RETURNING 1",
            uuid.UUID(conversation_id),
            uuid.UUID(user_id),
        )
        return done is not None

    @staticmethod
    async def set_role_txn(conn: Conn, conversation_id: str, user_id: str, role: str) -> None:
        await conn.execute(
            "UPDATE conversation_members SET role = $3 WHERE conversation_id = $1 AND user_id = $2",
            uuid.UUID(conversation_id),
            uuid.UUID(user_id),
            role,
        )

    @staticmethod
    async def rename_txn(conn: Conn, conversation_id: str, title: str) -> None:
        await conn.execute("UPDATE conversations SET title = $2 WHERE id = $1", uuid.UUID(conversation_id), title)

    @staticmethod
    async def successor_txn(conn: Conn, conversation_id: str) -> str | None:
        """Who takes over from an owner who left: the longest-standing active admin, else the
        longest-standing active member (None: nobody active is left)."""
        found = await conn.fetchval(
            """SELECT m.user_id FROM conversation_members m JOIN users u ON u.id = m.user_id
               WHERE m.conversation_id = $1 AND NOT u.disabled
               ORDER BY (m.role = 'admin') DESC, m.joined_at, m.user_id LIMIT 1""",
            uuid.UUID(conversation_id),
        )
        return None if found is None else str(found)

    # --- org groups ----------------------------------------------------------------------------

    @staticmethod
    async def reconcile_group_txn(conn: Conn, conversation_id: str, org_id: str) -> tuple[list[str], list[str]]:
        """Make the org group's members the active staff of ``org_id``'s subtree.
        Returns ``(added, removed)`` user ids."""
        conv = uuid.UUID(conversation_id)
        added = await conn.fetch(
            _SUBTREE
            + f""" INSERT INTO conversation_members (conversation_id, user_id, role)
                   SELECT $2, u.id, 'member' FROM users u JOIN sub ON sub.id = u.org_id WHERE {_STAFF}
                   ON CONFLICT DO NOTHING RETURNING user_id""",
            uuid.UUID(org_id),
            conv,
        )
        removed = await conn.fetch(
            _SUBTREE
            + f""" DELETE FROM conversation_members m WHERE m.conversation_id = $2 AND NOT EXISTS (
                       SELECT 1 FROM users u JOIN sub ON sub.id = u.org_id WHERE u.id = m.user_id AND {_STAFF})
                   RETURNING user_id""",
            uuid.UUID(org_id),
            conv,
        )
        return [str(r["user_id"]) for r in added], [str(r["user_id"]) for r in removed]

    @staticmethod
    async def reconcile_user_txn(conn: Conn, user_id: str) -> tuple[list[str], list[str]]:
        """Make the user a member of exactly the org groups they belong in now (their org or
        an ancestor's, while they are active staff). Returns ``(joined, left)`` group ids,
        the groups' rows locked (in id order) until the caller's transaction ends."""
        uid = uuid.UUID(user_id)
        rows = await conn.fetch(
            """WITH RECURSIVE up(id, parent_id) AS (
                   SELECT o.id, o.parent_id FROM orgs o JOIN users u ON u.org_id = o.id
                   WHERE u.id = $1 AND u.role <> 'customer' AND NOT u.disabled
                   UNION ALL SELECT o.id, o.parent_id FROM orgs o JOIN up ON o.id = up.parent_id)
               SELECT c.id, (c.org_id IN (SELECT id FROM up)) AS belongs,
                      EXISTS (SELECT 1 FROM conversation_members m WHERE m.conversation_id = c.id AND m.user_id = $1) AS is_member
               FROM conversations c
               WHERE c.org_id IS NOT NULL
                 AND (c.org_id IN (SELECT id FROM up)
                      OR EXISTS (SELECT 1 FROM conversation_members m WHERE m.conversation_id = c.id AND m.user_id = $1))
               ORDER BY c.id FOR UPDATE OF c""",
            uid,
        )
        joined = [r["id"] for r in rows if r["belongs"] and not r["is_member"]]
        left = [r["id"] for r in rows if not r["belongs"] and r["is_member"]]
        if joined:
            await conn.execute(
                """INSERT INTO conversation_members (conversation_id, user_id, role)
                   SELECT c, $1, 'member' FROM unnest($2::uuid[]) AS c ON CONFLICT DO NOTHING""",
                uid,
                joined,
            )
        if left:
            await conn.execute(
                "DELETE FROM conversation_members WHERE user_id = $1 AND conversation_id = ANY($2::uuid[])", uid, left
            )
        return [str(c) for c in joined], [str(c) for c in left]

    async def org_group_ids(self) -> list[str]:
        """Every org group (the periodic reconcile's work list)."""
        async with self.db.connection("org_groups") as conn:
            rows = await conn.fetch("SELECT id FROM conversations WHERE org_id IS NOT NULL ORDER BY id")
        return [str(r["id"]) for r in rows]
