"""Storage for supervision (delta 0025): rules, the rules' version, flags, figures.

All SQL of supervision lives here. Steps that take a connection (``*_txn``) run inside
the caller's transaction: the send transaction writes its flags with
:meth:`SupervisionStore.flag_txn`, so a message is committed with its flags or not at all.

:class:`SupervisionStore` also holds the node's compiled rule set (``hub.supervision``).
:meth:`SupervisionStore.current_txn` answers it for the send path without any query as
long as it was checked against ``supervision_state.version`` less than
``reload_seconds`` ago; then one single-row read compares the version. A changed version
never compiles in the send transaction: compiling can take seconds with many terms and would
hold the conversation's row lock and the event loop. A background refresh reads the rules on
its own connection and compiles them in a worker thread while the send path keeps using the
set it has; the new set replaces it only when its version is not older than the one in use
(two refreshes may finish out of order). Only the very first load, when a node has no set
yet, is awaited (in a worker thread too). The node that changes the rules reloads at once
(:meth:`SupervisionStore.reload`).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import secrets
import time
import uuid
from collections.abc import Sequence
from typing import Any

import asyncpg
import msgspec

from ..compliance.supervision import EMPTY, RuleSet, RuleSpec
from ..crypto.keyring import Keyring, call_provider
from ..ids import uuid7
from .db import Conn, Database

log = logging.getLogger(__name__)

__all__ = [
    "SupervisionStore",
    "RuleRow",
    "FlagRow",
    "NewFlag",
    "RuleFigures",
    "SampleFigures",
    "NameTaken",
]


class NameTaken(Exception):
    """Another rule that is not removed has this name (the caller's transaction is aborted)."""


class RuleRow(msgspec.Struct, frozen=True):
    rule_id: str
    name: str
    kind: str
    terms: list[str]
    pattern: str | None
    enabled: bool
    created_by: str | None  # username; None: seeded
    created_at: dt.datetime
    updated_at: dt.datetime

    def spec(self) -> RuleSpec:
        return RuleSpec(self.rule_id, self.name, self.kind, tuple(self.terms), self.pattern, self.enabled)


class NewFlag(msgspec.Struct, frozen=True):
    message_id: str | None  # None: a group title (subject "group_title", seq 0)
    conversation_id: str
    seq: int
    sender_id: str
    rule_id: str | None  # None: sampled
    matched: str | None = None  # the term or pattern the rule matched
    subject: str = "message"


class FlagRow(msgspec.Struct, frozen=True):
    flag_id: str
    rule_id: str | None
    rule_name: str  # "sample" for a sampled message
    conversation_id: str
    message_id: str | None  # None: a group title
    seq: int
    sender_id: str
    sender_username: str
    created_at: dt.datetime
    state: str
    decided_by: str | None  # username
    decided_at: dt.datetime | None
    note: str | None
    matched: str | None = None  # the term or pattern the rule matched (None: sampled)
    escalated_by: str | None = None  # username
    escalated_by_id: str | None = None
    escalated_at: dt.datetime | None = None
    escalation_note: str | None = None
    subject: str = "message"  # or "group_title"


class RuleFigures(msgspec.Struct, frozen=True):
    rule_id: str
    name: str
    kind: str
    enabled: bool
    removed: bool
    flagged: int
    open: int
    escalated: int
    closed: int


class SampleFigures(msgspec.Struct, frozen=True):
    user_id: str
    username: str
    role: str
    sampled: int
    open: int
    escalated: int
    closed: int


_RULE_SELECT = """SELECT r.id, r.name, r.kind, r.terms, r.pattern, r.enabled, u.username AS created_by, r.created_at,
                         r.updated_at
                  FROM supervision_rules r LEFT JOIN users u ON u.id = r.created_by"""
_FLAG_SELECT = """SELECT f.id, f.rule_id, coalesce(r.name, 'sample') AS rule_name, f.conversation_id, f.message_id, f.seq,
                         f.sender_id, s.username AS sender_username, f.created_at, f.state, d.username AS decided_by,
                         f.decided_at, f.note, f.matched, e.username AS escalated_by, f.escalated_by AS escalated_by_id,
                         f.escalated_at, f.escalation_note, f.subject
                  FROM supervision_flags f JOIN users s ON s.id = f.sender_id
                  LEFT JOIN supervision_rules r ON r.id = f.rule_id LEFT JOIN users d ON d.id = f.decided_by
                  LEFT JOIN users e ON e.id = f.escalated_by"""


def _sid(value: Any) -> str | None:
    return None if value is None else str(value)


def _rule(r: Any) -> RuleRow:
    return RuleRow(
        rule_id=str(r["id"]),
        name=r["name"],
        kind=r["kind"],
        terms=list(r["terms"]),
        pattern=r["pattern"],
        enabled=r["enabled"],
        created_by=r["created_by"],
        created_at=r["created_at"],
        updated_at=r["updated_at"],
    )


def _flag(r: Any) -> FlagRow:
    return FlagRow(
        flag_id=str(r["id"]),
        rule_id=_sid(r["rule_id"]),
        rule_name=r["rule_name"],
        conversation_id=str(r["conversation_id"]),
        message_id=_sid(r["message_id"]),
        seq=r["seq"],
        sender_id=str(r["sender_id"]),
        sender_username=r["sender_username"],
        created_at=r["created_at"],
        state=r["state"],
        decided_by=r["decided_by"],
        decided_at=r["decided_at"],
        note=r["note"],
        matched=r["matched"],
        escalated_by=r["escalated_by"],
        escalated_by_id=_sid(r["escalated_by_id"]),
        escalated_at=r["escalated_at"],
        escalation_note=r["escalation_note"],
        subject=r["subject"],
    )


class SupervisionStore:
    """See the module docstring. ``hub.supervision``."""

    def __init__(self, db: Database, reload_seconds: float, keyring: Keyring) -> None:
        self.db = db
        self.reload_seconds = reload_seconds
        self.keyring = keyring
        self._sample_key: bytes | None = None  # unwrapped once per node
        self.rules: RuleSet = EMPTY
        self._loaded = False
        self._checked = 0.0  # time.monotonic() of the last version check
        self._refresh: asyncio.Task[None] | None = None  # the background refresh running, if any

    # --- the node's compiled rule set ---------------------------------------------------------

    async def current_txn(self, conn: Conn) -> RuleSet:
        """The compiled rules for the send path: no query while the last check is fresh."""
        now = time.monotonic()
        if self._loaded and now - self._checked < self.reload_seconds:
            return self.rules
        if not self._loaded:
            self._use(await self._load(conn))  # no set yet: nothing to serve meanwhile
            self._checked = now
            return self.rules
        version = await conn.fetchval("SELECT version FROM supervision_state")
        self._checked = now
        if version != self.rules.version and (self._refresh is None or self._refresh.done()):
            self._refresh = asyncio.create_task(self._background_reload(), name="supervision-rules-refresh")
        return self.rules

    async def _background_reload(self) -> None:
        try:
            await self.reload()
        except Exception:  # the old set keeps serving; the next check tries again
            self._checked = 0.0
            log.exception("supervision rules could not be reloaded")

    def _use(self, rules: RuleSet) -> None:
        """Serve ``rules`` unless the set in use is newer (an older refresh finished last)."""
        if not self._loaded or rules.version >= self.rules.version:
            self.rules = rules
            self._loaded = True
        if rules.skipped:  # stored rules that no longer compile: say which (ids only)
            log.warning("supervision rules skipped, they no longer compile: %s", ", ".join(rules.skipped))

    async def reload(self) -> RuleSet:
        """Read and compile the rules now (after this node changed them)."""
        async with self.db.connection("supervision_reload") as conn:
            rules = await self._load(conn)
        self._use(rules)
        self._checked = time.monotonic()
        return self.rules

    async def close(self) -> None:
        """Stop a background refresh (the node is stopping)."""
        if self._refresh is not None and not self._refresh.done():
            self._refresh.cancel()
            try:
                await self._refresh
            except asyncio.CancelledError:
                pass

    async def _sample_key_txn(self, conn: Conn) -> bytes:
        """The sampling key, unwrapped once per node; made and stored wrapped by the first node
        that needs it (a racing node's ``UPDATE`` waits for the first and then finds it set)."""
        if self._sample_key is not None:
            return self._sample_key
        provider = self.keyring.provider
        row = await conn.fetchrow("SELECT kek_id, wrapped_sample_key FROM supervision_state")
        if row is not None and row["wrapped_sample_key"] is None:
            kek_id, wrapped = await call_provider(provider, provider.wrap, secrets.token_bytes(32))
            await conn.execute(
                "UPDATE supervision_state SET kek_id = $1, wrapped_sample_key = $2 WHERE wrapped_sample_key IS NULL", kek_id, wrapped
            )
            row = await conn.fetchrow("SELECT kek_id, wrapped_sample_key FROM supervision_state")
        if row is None:  # pragma: no cover - the migration inserts the row
            return b""
        key: bytes = await call_provider(provider, provider.unwrap, row["kek_id"], bytes(row["wrapped_sample_key"]))
        self._sample_key = key
        return key

    async def _load(self, conn: Conn) -> RuleSet:
        """Read the rules (one query) and compile them in a worker thread."""
        # one statement: the version and the rules it describes are read from one snapshot
        rows = await conn.fetch(
            """SELECT s.version, r.id, r.name, r.kind, r.terms, r.pattern, r.enabled
               FROM supervision_state s
               LEFT JOIN supervision_rules r ON r.removed_at IS NULL AND r.enabled
               ORDER BY r.created_at, r.id"""
        )
        if not rows:
            return EMPTY
        specs = [
            RuleSpec(str(r["id"]), r["name"], r["kind"], tuple(r["terms"]), r["pattern"], r["enabled"])
            for r in rows
            if r["id"] is not None
        ]
        key = await self._sample_key_txn(conn)
        return await asyncio.to_thread(RuleSet.build, specs, rows[0]["version"], key)

    # --- flags, in the send transaction -------------------------------------------------------

    @staticmethod
    async def flag_txn(conn: Conn, flags: Sequence[NewFlag]) -> None:
        """Write the flags of a batch of committed messages (one statement)."""
        if not flags:
            return
        await conn.execute(
            """INSERT INTO supervision_flags (id, message_id, conversation_id, seq, sender_id, rule_id, matched, subject)
               SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::bigint[], $5::uuid[], $6::uuid[], $7::text[], $8::text[])
               ON CONFLICT DO NOTHING""",
            [uuid7() for _ in flags],
            [None if f.message_id is None else uuid.UUID(f.message_id) for f in flags],
            [uuid.UUID(f.conversation_id) for f in flags],
            [f.seq for f in flags],
            [uuid.UUID(f.sender_id) for f in flags],
            [None if f.rule_id is None else uuid.UUID(f.rule_id) for f in flags],
            [f.matched for f in flags],
            [f.subject for f in flags],
        )

    async def title(self, conversation_id: str) -> str | None:
        """A conversation's title as it stands (a group title flag's read)."""
        async with self.db.connection("supervision_flag_title") as conn:
            title: str | None = await conn.fetchval("SELECT title FROM conversations WHERE id = $1", uuid.UUID(conversation_id))
        return title

    # --- rules --------------------------------------------------------------------------------

    async def list_rules(self, after: tuple[dt.datetime, uuid.UUID] | None, limit: int) -> list[RuleRow]:
        async with self.db.connection("supervision_rules") as conn:
            rows = await conn.fetch(
                _RULE_SELECT + """ WHERE r.removed_at IS NULL AND ($1::timestamptz IS NULL OR (r.created_at, r.id) > ($1, $2))
                                   ORDER BY r.created_at, r.id LIMIT $3""",
                after[0] if after else None,
                after[1] if after else None,
                limit,
            )
        return [_rule(r) for r in rows]

    @staticmethod
    async def count_rules_txn(conn: Conn, kind: str | None = None) -> int:
        """Rules not removed (of ``kind`` when given)."""
        count: int = await conn.fetchval(
            "SELECT count(*) FROM supervision_rules WHERE removed_at IS NULL AND ($1::text IS NULL OR kind = $1)", kind
        )
        return count

    @staticmethod
    async def _bump_txn(conn: Conn) -> None:
        await conn.execute("UPDATE supervision_state SET version = version + 1")

    @staticmethod
    async def add_rule_txn(
        conn: Conn, *, name: str, kind: str, terms: Sequence[str], pattern: str | None, enabled: bool, created_by: str | None
    ) -> RuleRow:
        """A new rule (the version raised with it); :class:`NameTaken` when the name is in use."""
        rule_id = uuid7()
        try:
            async with conn.transaction():  # a savepoint: the caller's transaction survives a taken name
                await conn.execute(
                    """INSERT INTO supervision_rules (id, name, kind, terms, pattern, enabled, created_by)
                       VALUES ($1, $2, $3, $4, $5, $6, $7)""",
                    rule_id,
                    name,
                    kind,
                    list(terms),
                    pattern,
                    enabled,
                    None if created_by is None else uuid.UUID(created_by),
                )
        except asyncpg.UniqueViolationError:
            raise NameTaken() from None
        await SupervisionStore._bump_txn(conn)
        row = await conn.fetchrow(_RULE_SELECT + " WHERE r.id = $1", rule_id)
        return _rule(row)

    @staticmethod
    async def lock_rule_txn(conn: Conn, rule_id: str) -> RuleRow | None:
        """The rule (not removed), locked for a change; None when there is none."""
        locked = await conn.fetchval(
            "SELECT id FROM supervision_rules WHERE id = $1 AND removed_at IS NULL FOR UPDATE", uuid.UUID(rule_id)
        )
        if locked is None:
            return None
        return _rule(await conn.fetchrow(_RULE_SELECT + " WHERE r.id = $1", locked))

    @staticmethod
    async def change_rule_txn(
        conn: Conn, rule_id: str, *, name: str, terms: Sequence[str], pattern: str | None, enabled: bool
    ) -> RuleRow:
        """Replace a locked rule's name, terms or pattern and switch; :class:`NameTaken`."""
        try:
            async with conn.transaction():
                await conn.execute(
                    """UPDATE supervision_rules SET name = $2, terms = $3, pattern = $4, enabled = $5, updated_at = now()
                       WHERE id = $1""",
                    uuid.UUID(rule_id),
                    name,
                    list(terms),
                    pattern,
                    enabled,
                )
        except asyncpg.UniqueViolationError:
            raise NameTaken() from None
        await SupervisionStore._bump_txn(conn)
        return _rule(await conn.fetchrow(_RULE_SELECT + " WHERE r.id = $1", uuid.UUID(rule_id)))

    @staticmethod
    async def remove_rule_txn(conn: Conn, rule_id: str) -> None:
        """Mark a locked rule removed (its flags keep naming it)."""
        await conn.execute(
            "UPDATE supervision_rules SET removed_at = now(), enabled = false, updated_at = now() WHERE id = $1",
            uuid.UUID(rule_id),
        )
        await SupervisionStore._bump_txn(conn)

    # --- the queue and decisions --------------------------------------------------------------

    async def queue(self, state: str, after: tuple[dt.datetime, uuid.UUID] | None, limit: int) -> list[FlagRow]:
        """Flags in ``state``, oldest first (metadata only)."""
        async with self.db.connection("supervision_queue") as conn:
            rows = await conn.fetch(
                _FLAG_SELECT + """ WHERE f.state = $1 AND ($2::timestamptz IS NULL OR (f.created_at, f.id) > ($2, $3))
                                   ORDER BY f.created_at, f.id LIMIT $4""",
                state,
                after[0] if after else None,
                after[1] if after else None,
                limit,
            )
        return [_flag(r) for r in rows]

    async def flag(self, flag_id: str) -> FlagRow | None:
        async with self.db.connection("supervision_flag") as conn:
            row = await conn.fetchrow(_FLAG_SELECT + " WHERE f.id = $1", uuid.UUID(flag_id))
        return None if row is None else _flag(row)

    @staticmethod
    async def lock_flag_txn(conn: Conn, flag_id: str) -> FlagRow | None:
        locked = await conn.fetchval("SELECT id FROM supervision_flags WHERE id = $1 FOR UPDATE", uuid.UUID(flag_id))
        if locked is None:
            return None
        return _flag(await conn.fetchrow(_FLAG_SELECT + " WHERE f.id = $1", locked))

    @staticmethod
    async def decide_txn(conn: Conn, flag_id: str, state: str, decided_by: str, note: str | None) -> FlagRow:
        """Escalate or close a locked flag: ``decided_*`` and ``note`` are the latest decision's;
        an escalation is also kept in ``escalated_*`` and ``escalation_note`` (a close keeps it)."""
        escalation = ", escalated_by = $3, escalated_at = now(), escalation_note = $4" if state == "escalated" else ""
        await conn.execute(
            "UPDATE supervision_flags SET state = $2, decided_by = $3, decided_at = now(), note = $4" + escalation + " WHERE id = $1",
            uuid.UUID(flag_id),
            state,
            uuid.UUID(decided_by),
            note,
        )
        return _flag(await conn.fetchrow(_FLAG_SELECT + " WHERE f.id = $1", uuid.UUID(flag_id)))

    # --- figures ------------------------------------------------------------------------------

    async def figures(self, max_senders: int) -> tuple[list[RuleFigures], list[SampleFigures], bool]:
        """Per rule (every rule not removed, and removed ones that flagged something) and per
        sampled sender (most sampled first, at most ``max_senders``; True when more exist)."""
        async with self.db.connection("supervision_figures") as conn:
            rules = await conn.fetch(
                """SELECT r.id, r.name, r.kind, r.enabled, r.removed_at IS NOT NULL AS removed,
                          count(f.id) AS flagged,
                          count(f.id) FILTER (WHERE f.state = 'open') AS open,
                          count(f.id) FILTER (WHERE f.state = 'escalated') AS escalated,
                          count(f.id) FILTER (WHERE f.state = 'closed') AS closed
                   FROM supervision_rules r LEFT JOIN supervision_flags f ON f.rule_id = r.id
                   GROUP BY r.id HAVING r.removed_at IS NULL OR count(f.id) > 0
                   ORDER BY r.created_at, r.id"""
            )
            senders = await conn.fetch(
                """SELECT f.sender_id, u.username, u.role, count(*) AS sampled,
                          count(*) FILTER (WHERE f.state = 'open') AS open,
                          count(*) FILTER (WHERE f.state = 'escalated') AS escalated,
                          count(*) FILTER (WHERE f.state = 'closed') AS closed
                   FROM supervision_flags f JOIN users u ON u.id = f.sender_id
                   WHERE f.rule_id IS NULL
                   GROUP BY f.sender_id, u.username, u.role ORDER BY count(*) DESC, u.username LIMIT $1""",
                max_senders + 1,
            )
        return (
            [
                RuleFigures(str(r["id"]), r["name"], r["kind"], r["enabled"], r["removed"], r["flagged"], r["open"], r["escalated"], r["closed"])
                for r in rules
            ],
            [
                SampleFigures(str(s["sender_id"]), s["username"], s["role"], s["sampled"], s["open"], s["escalated"], s["closed"])
                for s in senders[:max_senders]
            ],
            len(senders) > max_senders,
        )

    # --- the demo data ------------------------------------------------------------------------

    @staticmethod
    async def seed_txn(conn: Conn, rules: Sequence[tuple[str, Sequence[str]]]) -> None:
        """Seed lexicon rules (the demo data), unless rules exist."""
        if await conn.fetchval("SELECT count(*) FROM supervision_rules"):
            return
        for name, terms in rules:
            await conn.execute(
                # clock_timestamp and time-ordered ids: the seeded rules list in the order given
                "INSERT INTO supervision_rules (id, name, kind, terms, created_at) VALUES ($1, $2, 'lexicon', $3, clock_timestamp())",
                uuid7(),
                name,
                list(terms),
            )
        await SupervisionStore._bump_txn(conn)
