"""Storage for contacts (tables ``contacts``, ``contact_requests``, ``contact_blocks``,
``contact_invites``, and ``users.phone``).

Reads other parts use (``hub.contacts``): :meth:`ContactStore.are_contacts`,
:meth:`ContactStore.contact_ids`, :meth:`ContactStore.blocked_either_way` and their
``*_in`` forms that run in the caller's transaction. Writes are steps of the caller's
transaction (:mod:`bankhub.actions.contacts` opens it, takes :meth:`ContactStore.lock_users`
first, decides with :mod:`bankhub.policy`, then writes): counting a user's rows and adding
one happen under that user's transaction-scoped advisory lock, so two concurrent requests
cannot both pass a limit. Only the SHA-256 of an invite code is stored.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid
from collections.abc import Sequence
from typing import Any

import msgspec

from ..models import User
from .barriers import NOT_SEPARATED_SQL
from .db import Conn, Database
from .users import _USER_COLS as _USERS_COLS, user_from_row

__all__ = ["ContactStore", "ContactRow", "IncomingRow", "OutgoingRow", "InviteRow", "code_hash"]

# the columns user_from_row reads, as UserStore selects them, from the users row aliased u
_USER_COLS = ", ".join("u." + c.strip() for c in _USERS_COLS.split(","))


def code_hash(code: str) -> bytes:
    """What is stored of an invite code (the code has 80 random bits: a plain hash suffices)."""
    return hashlib.sha256(code.encode()).digest()


class ContactRow(msgspec.Struct, frozen=True):
    """A contact of mine (or a user I block) and since when."""

    user: User
    since: dt.datetime


class IncomingRow(msgspec.Struct, frozen=True):
    """A pending request to me, and who sent it."""

    id: str
    user: User
    created_at: dt.datetime


class OutgoingRow(msgspec.Struct, frozen=True):
    """A request I sent, as I typed its addressee (whether it reached anyone is not shown)."""

    id: str
    handle: str
    created_at: dt.datetime


class InviteRow(msgspec.Struct, frozen=True):
    """An invite code's owner and state, read for update while it is redeemed."""

    user_id: str
    usable: bool  # not used and not expired


def _uuid(value: str) -> uuid.UUID:
    return uuid.UUID(value)


class ContactStore:
    """See the module docstring. ``max_contacts`` bounds :meth:`contact_ids`."""

    def __init__(self, db: Database, *, max_contacts: int = 1000) -> None:
        self.db = db
        self.max_contacts = max_contacts

    # --- reads other parts use ---------------------------------------------------------

    async def are_contacts(self, user_id: str, other_id: str) -> bool:
        """Whether the two are accepted contacts, neither blocks the other and no information
        barrier separates them."""
        async with self.db.connection("contacts_are_contacts") as conn:
            return await self.are_contacts_in(conn, user_id, other_id)

    @staticmethod
    async def are_contacts_in(conn: Conn, user_id: str, other_id: str) -> bool:
        """:meth:`are_contacts` in the caller's transaction."""
        return bool(
            await conn.fetchval(
                f"""SELECT EXISTS (SELECT 1 FROM contacts WHERE user_id = $1 AND contact_id = $2)
                          AND NOT EXISTS (SELECT 1 FROM contact_blocks
                                          WHERE (user_id = $1 AND blocked_id = $2) OR (user_id = $2 AND blocked_id = $1))
                          AND {NOT_SEPARATED_SQL("$1::uuid", "$2::uuid")}""",
                _uuid(user_id),
                _uuid(other_id),
            )
        )

    async def contact_ids(self, user_id: str) -> list[str]:
        """The user's accepted contacts with no block either way and no information barrier
        between them (at most ``max_contacts``): presence follows it."""
        async with self.db.connection("contacts_ids") as conn:
            return await self.contact_ids_in(conn, user_id, self.max_contacts)

    @staticmethod
    async def contact_ids_in(conn: Conn, user_id: str, limit: int) -> list[str]:
        """:meth:`contact_ids` in the caller's transaction, at most ``limit``."""
        rows = await conn.fetch(
            f"""SELECT c.contact_id FROM contacts c
               WHERE c.user_id = $1 AND NOT EXISTS (
                   SELECT 1 FROM contact_blocks b
                   WHERE (b.user_id = $1 AND b.blocked_id = c.contact_id) OR (b.user_id = c.contact_id AND b.blocked_id = $1))
                 AND {NOT_SEPARATED_SQL("$1::uuid", "c.contact_id")}
               ORDER BY c.contact_id LIMIT $2""",
            _uuid(user_id),
            limit,
        )
        return [str(r["contact_id"]) for r in rows]

    async def blocked_either_way(self, a_id: str, b_id: str) -> bool:
        """Whether either user blocks the other."""
        async with self.db.connection("contacts_blocked") as conn:
            return await self.blocked_either_way_in(conn, a_id, b_id)

    @staticmethod
    async def blocked_either_way_in(conn: Conn, a_id: str, b_id: str) -> bool:
        """:meth:`blocked_either_way` in the caller's transaction."""
        return bool(
            await conn.fetchval(
                """SELECT EXISTS (SELECT 1 FROM contact_blocks
                                  WHERE (user_id = $1 AND blocked_id = $2) OR (user_id = $2 AND blocked_id = $1))""",
                _uuid(a_id),
                _uuid(b_id),
            )
        )

    async def relation(self, a_id: str, b_id: str) -> tuple[bool, bool]:
        """``(contacts, blocked)`` between two users in one round trip: accepted contacts,
        and a block either way (opening a direct conversation asks both)."""
        async with self.db.connection("contacts_relation") as conn:
            row = await conn.fetchrow(
                """SELECT EXISTS (SELECT 1 FROM contacts WHERE user_id = $1 AND contact_id = $2) AS contacts,
                          EXISTS (SELECT 1 FROM contact_blocks WHERE (user_id = $1 AND blocked_id = $2)
                                                                  OR (user_id = $2 AND blocked_id = $1)) AS blocked""",
                _uuid(a_id),
                _uuid(b_id),
            )
        assert row is not None  # SELECT without FROM: always one row
        return bool(row["contacts"]), bool(row["blocked"])

    # --- users: phone numbers, lookups, the per-user lock -------------------------------

    @staticmethod
    async def set_phone(conn: Conn, user_id: str, phone: str | None) -> None:
        """Set (or clear) a user's phone number, already normalized to E.164."""
        await conn.execute("UPDATE users SET phone = $2 WHERE id = $1", _uuid(user_id), phone)

    @staticmethod
    async def user_by_username(conn: Conn, username: str) -> User | None:
        row = await conn.fetchrow(f"SELECT {_USER_COLS} FROM users u WHERE u.username = $1", username)
        return None if row is None else user_from_row(row)

    @staticmethod
    async def user_by_phone(conn: Conn, phone: str) -> User | None:
        row = await conn.fetchrow(f"SELECT {_USER_COLS} FROM users u WHERE u.phone = $1", phone)
        return None if row is None else user_from_row(row)

    @staticmethod
    async def user_by_id(conn: Conn, user_id: str) -> User | None:
        row = await conn.fetchrow(f"SELECT {_USER_COLS} FROM users u WHERE u.id = $1", _uuid(user_id))
        return None if row is None else user_from_row(row)

    @staticmethod
    async def lock_users(conn: Conn, *user_ids: str) -> None:
        """Serialise the contact changes of these users until the transaction ends (advisory
        locks, taken in id order: no deadlocks). Every write below runs under them."""
        for uid in sorted(set(user_ids)):
            await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended('contacts:' || $1::text, 0))", uid)

    # --- contacts -----------------------------------------------------------------------

    @staticmethod
    async def count_contacts(conn: Conn, user_id: str) -> int:
        return int(await conn.fetchval("SELECT count(*) FROM contacts WHERE user_id = $1", _uuid(user_id)))

    @staticmethod
    async def is_contact(conn: Conn, user_id: str, other_id: str) -> bool:
        return bool(
            await conn.fetchval("SELECT 1 FROM contacts WHERE user_id = $1 AND contact_id = $2", _uuid(user_id), _uuid(other_id))
        )

    @staticmethod
    async def befriend(conn: Conn, a_id: str, b_id: str) -> bool:
        """Make ``a`` and ``b`` contacts (both rows) and drop the requests between them.
        Returns False when they were contacts already."""
        a, b = _uuid(a_id), _uuid(b_id)
        await conn.execute(
            """DELETE FROM contact_requests
               WHERE ((from_id = $1 AND to_id = $2) OR (from_id = $2 AND to_id = $1)) AND state <> 'withdrawn'""",
            a,
            b,
        )
        status = await conn.execute(
            "INSERT INTO contacts (user_id, contact_id) VALUES ($1, $2), ($2, $1) ON CONFLICT DO NOTHING", a, b
        )
        return status != "INSERT 0 0"

    @staticmethod
    async def unfriend(conn: Conn, a_id: str, b_id: str) -> bool:
        """End the contact between ``a`` and ``b`` (both rows). Returns whether they were contacts."""
        status = await conn.execute(
            """DELETE FROM contacts WHERE (user_id = $1 AND contact_id = $2) OR (user_id = $2 AND contact_id = $1)""",
            _uuid(a_id),
            _uuid(b_id),
        )
        return status != "DELETE 0"

    async def list_contacts(self, user_id: str, *, after: str | None, limit: int) -> list[ContactRow]:
        """A page of the user's contacts by username, after the username ``after`` (those an
        information barrier separates from the user are omitted)."""
        async with self.db.connection("contacts_list") as conn:
            rows = await conn.fetch(
                f"""SELECT {_USER_COLS}, c.created_at FROM contacts c JOIN users u ON u.id = c.contact_id
                    WHERE c.user_id = $1 AND ($2::text IS NULL OR u.username > $2) AND {NOT_SEPARATED_SQL("$1::uuid", "c.contact_id")}
                    ORDER BY u.username LIMIT $3""",
                _uuid(user_id),
                after,
                limit,
            )
        return [ContactRow(user=user_from_row(r), since=r["created_at"]) for r in rows]

    # --- requests -----------------------------------------------------------------------

    @staticmethod
    async def purge_lapsed(conn: Conn, from_id: str, ttl: dt.timedelta) -> None:
        """Delete the sender's requests that lapsed (older than ``ttl``, answered or not)."""
        await conn.execute(
            "DELETE FROM contact_requests WHERE from_id = $1 AND created_at <= now() - $2::interval", _uuid(from_id), ttl
        )

    @staticmethod
    async def count_outgoing(conn: Conn, from_id: str) -> int:
        """The sender's requests that still count (call :meth:`purge_lapsed` first): pending,
        declined and withdrawn alike, so withdrawing frees no room before the request lapses."""
        return int(await conn.fetchval("SELECT count(*) FROM contact_requests WHERE from_id = $1", _uuid(from_id)))

    @staticmethod
    async def count_incoming(conn: Conn, to_id: str, ttl: dt.timedelta) -> int:
        return int(
            await conn.fetchval(
                """SELECT count(*) FROM contact_requests
                   WHERE to_id = $1 AND state = 'pending' AND created_at > now() - $2::interval""",
                _uuid(to_id),
                ttl,
            )
        )

    @staticmethod
    async def pending_from(conn: Conn, from_id: str, to_id: str, ttl: dt.timedelta) -> str | None:
        """The id of ``from``'s pending, unlapsed request to ``to``, if any."""
        rid = await conn.fetchval(
            """SELECT id FROM contact_requests
               WHERE from_id = $1 AND to_id = $2 AND state = 'pending' AND created_at > now() - $3::interval""",
            _uuid(from_id),
            _uuid(to_id),
            ttl,
        )
        return None if rid is None else str(rid)

    @staticmethod
    async def has_request_to(conn: Conn, from_id: str, to_id: str) -> bool:
        """Whether ``from`` has a request (pending or declined, any age) reaching ``to``."""
        return bool(
            await conn.fetchval(
                "SELECT 1 FROM contact_requests WHERE from_id = $1 AND to_id = $2 AND state <> 'withdrawn'",
                _uuid(from_id),
                _uuid(to_id),
            )
        )

    @staticmethod
    async def add_request(conn: Conn, from_id: str, to_id: str | None, handle: str) -> str | None:
        """Store a request (``to_id`` None: it reaches nobody). Returns its id, or None when
        the sender already has one to this handle (nothing changes). Callers pass ``to_id``
        only after :meth:`has_request_to` said no, under the sender's lock."""
        rid = uuid.uuid4()
        inserted = await conn.fetchval(
            """INSERT INTO contact_requests (id, from_id, to_id, to_handle, state) VALUES ($1, $2, $3, $4, 'pending')
               ON CONFLICT DO NOTHING RETURNING id""",
            rid,
            _uuid(from_id),
            None if to_id is None else _uuid(to_id),
            handle,
        )
        return None if inserted is None else str(inserted)

    @staticmethod
    async def request_sender(conn: Conn, request_id: str) -> str | None:
        """Who sent request ``request_id`` (no lock: callers lock the users, then the row)."""
        from_id = await conn.fetchval("SELECT from_id FROM contact_requests WHERE id = $1", _uuid(request_id))
        return None if from_id is None else str(from_id)

    @staticmethod
    async def take_incoming(conn: Conn, request_id: str, to_id: str, ttl: dt.timedelta) -> str | None:
        """Lock a pending, unlapsed request to ``to_id``; returns its sender's id (None: no such request)."""
        from_id = await conn.fetchval(
            """SELECT from_id FROM contact_requests
               WHERE id = $1 AND to_id = $2 AND state = 'pending' AND created_at > now() - $3::interval FOR UPDATE""",
            _uuid(request_id),
            _uuid(to_id),
            ttl,
        )
        return None if from_id is None else str(from_id)

    @staticmethod
    async def decline(conn: Conn, request_id: str, to_id: str, ttl: dt.timedelta) -> str | None:
        """Decline a pending request to ``to_id`` (kept, hidden from them; its sender sees no
        change). Returns the sender's id, None when there is no such request."""
        from_id = await conn.fetchval(
            """UPDATE contact_requests SET state = 'declined', decided_at = now()
               WHERE id = $1 AND to_id = $2 AND state = 'pending' AND created_at > now() - $3::interval
               RETURNING from_id""",
            _uuid(request_id),
            _uuid(to_id),
            ttl,
        )
        return None if from_id is None else str(from_id)

    @staticmethod
    async def withdraw(conn: Conn, request_id: str, from_id: str) -> tuple[bool, str | None]:
        """Withdraw the sender's own request: marked ``withdrawn`` (shown to nobody, still
        counted against the sender's pending limit until it lapses). Returns ``(found,
        addressee)``, the addressee only when the request was still pending for them (their
        devices drop it)."""
        row = await conn.fetchrow(
            """WITH old AS (SELECT id, to_id, state FROM contact_requests
                            WHERE id = $1 AND from_id = $2 AND state <> 'withdrawn' FOR UPDATE)
               UPDATE contact_requests r SET state = 'withdrawn', decided_at = now()
               FROM old WHERE r.id = old.id RETURNING old.to_id, old.state""",
            _uuid(request_id),
            _uuid(from_id),
        )
        if row is None:
            return False, None
        return True, str(row["to_id"]) if row["to_id"] is not None and row["state"] == "pending" else None

    async def list_incoming(
        self, to_id: str, ttl: dt.timedelta, *, after: tuple[dt.datetime, uuid.UUID] | None, limit: int
    ) -> list[IncomingRow]:
        """A page of pending requests to the user, newest first, after the key ``after``."""
        async with self.db.connection("contacts_incoming") as conn:
            rows = await conn.fetch(
                f"""SELECT r.id AS request_id, r.created_at, {_USER_COLS}
                    FROM contact_requests r JOIN users u ON u.id = r.from_id
                    WHERE r.to_id = $1 AND r.state = 'pending' AND r.created_at > now() - $2::interval
                      AND NOT u.disabled  -- a disabled sender's request cannot be accepted: not shown
                      AND ($3::timestamptz IS NULL OR (r.created_at, r.id) < ($3, $4))
                    ORDER BY r.created_at DESC, r.id DESC LIMIT $5""",
                _uuid(to_id),
                ttl,
                None if after is None else after[0],
                None if after is None else after[1],
                limit,
            )
        return [IncomingRow(id=str(r["request_id"]), user=user_from_row(r), created_at=r["created_at"]) for r in rows]

    async def list_outgoing(
        self, from_id: str, ttl: dt.timedelta, *, after: tuple[dt.datetime, uuid.UUID] | None, limit: int
    ) -> list[OutgoingRow]:
        """A page of the user's unlapsed requests, newest first: pending and declined ones
        and those that reached nobody alike (their sender is never told which)."""
        async with self.db.connection("contacts_outgoing") as conn:
            rows = await conn.fetch(
                """SELECT id, to_handle, created_at FROM contact_requests
                   WHERE from_id = $1 AND state <> 'withdrawn' AND created_at > now() - $2::interval
                     AND ($3::timestamptz IS NULL OR (created_at, id) < ($3, $4))
                   ORDER BY created_at DESC, id DESC LIMIT $5""",
                _uuid(from_id),
                ttl,
                None if after is None else after[0],
                None if after is None else after[1],
                limit,
            )
        return [OutgoingRow(id=str(r["id"]), handle=r["to_handle"], created_at=r["created_at"]) for r in rows]

    # --- blocks -------------------------------------------------------------------------

    @staticmethod
    async def count_blocks(conn: Conn, user_id: str) -> int:
        return int(await conn.fetchval("SELECT count(*) FROM contact_blocks WHERE user_id = $1", _uuid(user_id)))

    @staticmethod
    async def block(conn: Conn, user_id: str, blocked_id: str) -> tuple[bool, list[str]]:
        """Record the block (the caller ends the contact) and settle the requests between the
        two so that the blocked user cannot tell a block from a decline: theirs to the
        blocker reads as declined (still shown to them as sent), the blocker's to them is
        withdrawn (still counted). Returns ``(new, withdrawn)``: False when the block was
        recorded already, and the ids of the blocker's requests that were pending for the
        blocked user (their devices drop them)."""
        a, b = _uuid(user_id), _uuid(blocked_id)
        status = await conn.execute(
            "INSERT INTO contact_blocks (user_id, blocked_id) VALUES ($1, $2) ON CONFLICT DO NOTHING", a, b
        )
        if status == "INSERT 0 0":
            return False, []
        await conn.execute(
            """UPDATE contact_requests SET state = 'declined', decided_at = now()
               WHERE from_id = $2 AND to_id = $1 AND state = 'pending'""",
            a,
            b,
        )
        rows: Sequence[Any] = await conn.fetch(
            """WITH old AS (SELECT id, state FROM contact_requests
                            WHERE from_id = $1 AND to_id = $2 AND state <> 'withdrawn' FOR UPDATE)
               UPDATE contact_requests r SET state = 'withdrawn', decided_at = now()
               FROM old WHERE r.id = old.id RETURNING r.id, old.state""",
            a,
            b,
        )
        return True, [str(r["id"]) for r in rows if r["state"] == "pending"]

    @staticmethod
    async def unblock(conn: Conn, user_id: str, blocked_id: str) -> bool:
        status = await conn.execute(
            "DELETE FROM contact_blocks WHERE user_id = $1 AND blocked_id = $2", _uuid(user_id), _uuid(blocked_id)
        )
        return status != "DELETE 0"

    async def list_blocked(self, user_id: str, *, after: str | None, limit: int) -> list[ContactRow]:
        """A page of the users the user blocks, by username, after the username ``after``."""
        async with self.db.connection("contacts_blocked_list") as conn:
            rows = await conn.fetch(
                f"""SELECT {_USER_COLS}, b.created_at FROM contact_blocks b JOIN users u ON u.id = b.blocked_id
                    WHERE b.user_id = $1 AND ($2::text IS NULL OR u.username > $2)
                    ORDER BY u.username LIMIT $3""",
                _uuid(user_id),
                after,
                limit,
            )
        return [ContactRow(user=user_from_row(r), since=r["created_at"]) for r in rows]

    # --- invite codes -------------------------------------------------------------------

    @staticmethod
    async def add_invite(conn: Conn, user_id: str, code: str, ttl: dt.timedelta, max_outstanding: int) -> dt.datetime | None:
        """Store a new invite code's hash; returns its expiry, or None when the user holds
        ``max_outstanding`` usable codes already. Used and expired codes are deleted first."""
        uid = _uuid(user_id)
        await conn.execute("DELETE FROM contact_invites WHERE user_id = $1 AND (used_at IS NOT NULL OR expires_at <= now())", uid)
        if int(await conn.fetchval("SELECT count(*) FROM contact_invites WHERE user_id = $1", uid)) >= max_outstanding:
            return None
        expires: dt.datetime = await conn.fetchval(
            "INSERT INTO contact_invites (code_hash, user_id, expires_at) VALUES ($1, $2, now() + $3::interval) RETURNING expires_at",
            code_hash(code),
            uid,
            ttl,
        )
        return expires

    @staticmethod
    async def take_invite_owner(conn: Conn, code: str) -> str | None:
        """Whose invite code ``code`` is (no lock: callers lock the users, then the row)."""
        owner = await conn.fetchval("SELECT user_id FROM contact_invites WHERE code_hash = $1", code_hash(code))
        return None if owner is None else str(owner)

    @staticmethod
    async def take_invite(conn: Conn, code: str) -> InviteRow | None:
        """Lock the invite code ``code`` (None: no such code)."""
        row = await conn.fetchrow(
            """SELECT user_id, used_at IS NULL AND expires_at > now() AS usable
               FROM contact_invites WHERE code_hash = $1 FOR UPDATE""",
            code_hash(code),
        )
        return None if row is None else InviteRow(user_id=str(row["user_id"]), usable=bool(row["usable"]))

    @staticmethod
    async def use_invite(conn: Conn, code: str, used_by: str) -> None:
        await conn.execute(
            "UPDATE contact_invites SET used_at = now(), used_by = $2 WHERE code_hash = $1", code_hash(code), _uuid(used_by)
        )

    @staticmethod
    async def revoke_invites(conn: Conn, user_id: str) -> int:
        """Delete every invite code of the user (used, expired or not); returns how many were usable."""
        rows: Sequence[Any] = await conn.fetch(
            "DELETE FROM contact_invites WHERE user_id = $1 RETURNING used_at IS NULL AND expires_at > now() AS usable",
            _uuid(user_id),
        )
        return sum(1 for r in rows if r["usable"])
