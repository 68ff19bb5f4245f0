"""Storage for alerts, inboxes, preferences and fallback delivery.

Tables ``alerts``, ``alert_inbox``, ``alert_requests``, ``alert_preferences``,
``alert_fallback`` (schema 0006). The rules every writer keeps:

* **Seqs are gap-free per user.** An alert's inbox seq is allocated by bumping
  ``alert_inbox.last_seq`` in the inserting transaction, under that row's lock.
* **One lock order.** A transaction that changes a user's alerts locks the user's
  ``alert_inbox`` row first (several users: in user-id order), then the alert rows.
* **The unread counter is exact.** An alert *counts* while ``seq IS NOT NULL AND state =
  'unread' AND superseded_by IS NULL AND expired_at IS NULL``; every statement that moves
  an alert out of (or into) that set adjusts ``alert_inbox.unread`` in the same
  transaction. An unread alert past ``expires_at`` leaves the count when the sweeper sets
  ``expired_at``; until then :meth:`AlertStore.counts` subtracts it, so readers never see
  an expired alert counted.
* **Deliverable** means ``seq IS NOT NULL AND superseded_by IS NULL AND (expires_at IS
  NULL OR expires_at > now())``: only such alerts are pushed, synced or listed.
* **Texts are encrypted at rest** (:mod:`bankhub.alerts.content`) under the recipient's
  data key (``alert_keys``, created in the first writing transaction for that user, after
  the inbox row lock). Reads that return text join ``alert_keys``; the others leave
  ``title`` and ``body`` empty.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import msgspec

import logging

from ..alerts.content import CONTENT_KEY_ID, ContentUnreadable, open_content, seal
from ..alerts.rules import DEFAULT_PREFERENCES, Preferences
from ..crypto.keyring import DataKey, Keyring, KeyringError
from ..models import User
from .db import Conn, Database
from .keys import KeyUnavailable
from .users import user_from_row

log = logging.getLogger("bankhub.storage.alerts")

__all__ = [
    "AlertStore",
    "Recipient",
    "PlannedAlert",
    "AlertRecord",
    "IngestOutcome",
    "InboxCounts",
    "InboxSince",
    "FallbackJob",
    "Recipients",
]


class Recipient(msgspec.Struct, frozen=True):
    user: User
    prefs: Preferences


class PlannedAlert(msgspec.Struct):
    """An alert the ingest decided to write (``stored`` False: suppressed, no seq)."""

    id: uuid.UUID
    user_id: str
    category: str
    priority: str
    template: str
    locale: str
    title: str
    body: str
    collapse_key: str | None
    silent: bool
    expires_at: dt.datetime | None
    stored: bool
    fallback_at: dt.datetime | None


class AlertRecord(msgspec.Struct):
    """One ``alerts`` row (and its fallback row, where the query joined it)."""

    id: str
    system_id: str
    user_id: str
    seq: int | None
    category: str
    priority: str
    template: str
    locale: str
    collapse_key: str | None
    silent: bool
    created_at: dt.datetime
    expires_at: dt.datetime | None
    state: str
    read_at: dt.datetime | None
    archived_at: dt.datetime | None
    delivered_at: dt.datetime | None
    superseded_by: str | None
    superseded_at: dt.datetime | None
    expired_at: dt.datetime | None
    replaces: str | None
    title: str = ""  # empty where the read did not need the text
    body: str = ""
    fallback: dict[str, Any] | None = None


class IngestOutcome(msgspec.Struct):
    """``status``: ``created``, ``replayed`` (same key, same body: the original alerts) or
    ``conflict`` (same key, another body: nothing written)."""

    status: str
    alerts: list[AlertRecord] = []


class InboxCounts(msgspec.Struct):
    last_seq: int
    unread: int


class InboxSince(msgspec.Struct):
    alerts: list[AlertRecord]
    cursor: int
    last_seq: int
    unread: int
    has_more: bool


class FallbackJob(msgspec.Struct):
    alert: AlertRecord
    username: str
    attempts: int


class Recipients(msgspec.Struct):
    """What :meth:`AlertStore.recipients_txn` read: the recipients that exist by username
    (with their preferences), and their wrapped data keys by user id."""

    by_username: dict[str, Recipient]
    known_keys: dict[uuid.UUID, tuple[str, bytes]]

_ALERT_COLS = (
    "a.id, a.system_id, a.user_id, a.seq, a.category, a.priority, a.template, a.locale, "
    "a.collapse_key, a.silent, a.created_at, a.expires_at, a.state, a.read_at, a.archived_at, a.delivered_at, "
    "a.superseded_by, a.superseded_at, a.expired_at, a.replaces"
)
_FALLBACK_COLS = (
    "f.state AS f_state, f.attempts AS f_attempts, f.next_at AS f_next_at, f.last_error AS f_last_error, "
    "f.cancel_reason AS f_cancel_reason, f.sent_at AS f_sent_at, f.dead_at AS f_dead_at"
)
# reads that return the text: the sealed content and the recipient's wrapped data key
_TEXT_COLS = "a.content, a.content_key_id, k.kek_id AS k_kek, k.wrapped_dek AS k_wrapped"
_WITH_KEYS = "alerts a LEFT JOIN alert_keys k ON k.user_id = a.user_id"
_COUNTED = "a.seq IS NOT NULL AND a.state = 'unread' AND a.superseded_by IS NULL AND a.expired_at IS NULL"
_DELIVERABLE = "a.seq IS NOT NULL AND a.superseded_by IS NULL AND (a.expires_at IS NULL OR a.expires_at > now())"


def _str(value: Any) -> str | None:
    return None if value is None else str(value)


def _record(row: Any, *, fallback: bool = False) -> AlertRecord:
    rec = AlertRecord(
        id=str(row["id"]),
        system_id=str(row["system_id"]),
        user_id=str(row["user_id"]),
        seq=row["seq"],
        category=row["category"],
        priority=row["priority"],
        template=row["template"],
        locale=row["locale"],
        collapse_key=row["collapse_key"],
        silent=row["silent"],
        created_at=row["created_at"],
        expires_at=row["expires_at"],
        state=row["state"],
        read_at=row["read_at"],
        archived_at=row["archived_at"],
        delivered_at=row["delivered_at"],
        superseded_by=_str(row["superseded_by"]),
        superseded_at=row["superseded_at"],
        expired_at=row["expired_at"],
        replaces=_str(row["replaces"]),
    )
    if fallback and row["f_state"] is not None:
        rec.fallback = {
            "state": row["f_state"],
            "attempts": row["f_attempts"],
            "next_at": row["f_next_at"],
            "last_error": row["f_last_error"],
            "cancel_reason": row["f_cancel_reason"],
            "sent_at": row["f_sent_at"],
            "dead_at": row["f_dead_at"],
        }
    return rec


def _prefs(row: Any) -> Preferences:
    if row["p_user"] is None:
        return DEFAULT_PREFERENCES
    quiet = None if row["quiet_start"] is None else (int(row["quiet_start"]), int(row["quiet_end"]))
    return Preferences(muted=frozenset(row["muted"]), quiet=quiet, timezone=row["timezone"], locale=row["locale"])


def _count(status: str) -> int:
    return int(status.rsplit(" ", 1)[-1])


async def _lock_inboxes(conn: Conn, user_ids: Sequence[uuid.UUID]) -> None:
    """Create (if needed) and lock the users' inbox rows, in user-id order."""
    ids = sorted(set(user_ids))
    await conn.execute(
        "INSERT INTO alert_inbox (user_id) SELECT unnest($1::uuid[]) ORDER BY 1 ON CONFLICT DO NOTHING", ids
    )
    await conn.execute("SELECT 1 FROM alert_inbox WHERE user_id = ANY($1::uuid[]) ORDER BY user_id FOR UPDATE", ids)


async def _take_unread(conn: Conn, per_user: dict[uuid.UUID, int]) -> None:
    if per_user:
        users = list(per_user)
        await conn.execute(
            """UPDATE alert_inbox i SET unread = i.unread - v.n
               FROM unnest($1::uuid[], $2::bigint[]) AS v(user_id, n) WHERE i.user_id = v.user_id""",
            users,
            [per_user[u] for u in users],
        )


class AlertStore:
    """``keyring`` seals and opens alert texts; without one (tools that never touch texts)
    only the reads that leave ``title`` and ``body`` empty work."""

    def __init__(self, db: Database, keyring: Keyring | None = None) -> None:
        self.db = db
        self.keyring = keyring

    def _keys(self) -> Keyring:
        if self.keyring is None:
            raise RuntimeError("this AlertStore has no keyring: it cannot seal or open alert texts")
        return self.keyring

    async def _user_keys(
        self, conn: Conn, user_ids: Sequence[uuid.UUID], known: dict[uuid.UUID, tuple[str, bytes]]
    ) -> dict[uuid.UUID, DataKey]:
        """The data keys of these users (``known``: wrapped keys read already), created for
        those who have none yet."""
        keyring = self._keys()
        ids = sorted(set(user_ids))
        sql = "SELECT user_id, kek_id, wrapped_dek FROM alert_keys WHERE user_id = ANY($1::uuid[])"
        rows = {u: known[u] for u in ids if u in known}
        missing = [u for u in ids if u not in rows]
        try:
            if missing:
                made = [await keyring.create() for _ in missing]
                await conn.execute(
                    """INSERT INTO alert_keys (user_id, kek_id, wrapped_dek)
                       SELECT * FROM unnest($1::uuid[], $2::text[], $3::bytea[]) ON CONFLICT DO NOTHING""",
                    missing,
                    [m[0] for m in made],
                    [m[1] for m in made],
                )
                # a concurrent first alert for the same user may have won: read what is stored
                rows.update({r["user_id"]: (r["kek_id"], r["wrapped_dek"]) for r in await conn.fetch(sql, missing)})
            unwrapped = await keyring.unwrap_many(rows.values())
        except KeyringError as exc:
            raise KeyUnavailable(f"alert data key: {exc}") from exc
        return {u: unwrapped[rows[u]] for u in ids}

    async def _with_text(self, rows: Sequence[Any], *, fallback: bool = False) -> list[AlertRecord]:
        """Records with their title and body opened (rows selected with ``_TEXT_COLS``)."""
        keyring = self._keys()
        wrapped = {(r["k_kek"], r["k_wrapped"]) for r in rows if r["k_wrapped"] is not None}
        try:
            keys = await keyring.unwrap_many(wrapped)
        except KeyringError as exc:
            raise KeyUnavailable(f"alert data key: {exc}") from exc
        out = []
        for r in rows:
            rec = _record(r, fallback=fallback)
            key = keys.get((r["k_kek"], r["k_wrapped"])) if r["k_wrapped"] is not None else None
            try:
                if key is None:
                    raise ContentUnreadable("no data key")
                rec.title, rec.body = open_content(key, rec.id, rec.user_id, r["content"], r["content_key_id"])
            except (ContentUnreadable, ValueError):
                # damaged or tampered storage: never show another alert's text in its place
                log.warning("alert %s: stored text does not open; shown empty", rec.id)
            out.append(rec)
        return out

    # --- ingest ------------------------------------------------------------------------

    # An ingest is one transaction of the caller's (``alerts_ingest``) in three steps:
    # :meth:`claim_request_txn` inserts the ``alert_requests`` row first, so a concurrent
    # request with the same key waits for this transaction and then sees it (``replayed``
    # or ``conflict``); :meth:`recipients_txn` reads the recipients, their preferences and
    # keys; the caller plans the alerts (the policy and the templates decide) and
    # :meth:`write_txn` stores them. An exception rolls everything back (the key stays
    # free for a corrected request).

    async def claim_request_txn(self, conn: Conn, system_id: str, idempotency_key: str, body_sha256: bytes) -> IngestOutcome | None:
        """Claim the request's idempotency key. None: a new request (go on); otherwise the
        answer to a retry: ``replayed`` with the original alerts, or ``conflict``."""
        sys_id = uuid.UUID(system_id)
        fresh = await conn.fetchval(
            """INSERT INTO alert_requests (system_id, idempotency_key, body_sha256) VALUES ($1, $2, $3)
               ON CONFLICT DO NOTHING RETURNING true""",
            sys_id,
            idempotency_key,
            body_sha256,
        )
        if fresh:
            return None
        row = await conn.fetchrow(
            "SELECT body_sha256, alert_ids FROM alert_requests WHERE system_id = $1 AND idempotency_key = $2",
            sys_id,
            idempotency_key,
        )
        assert row is not None  # the conflicting insert committed: its row is visible now
        if row["body_sha256"] != body_sha256:
            return IngestOutcome("conflict")
        return IngestOutcome("replayed", await self._by_ids(conn, list(row["alert_ids"])))

    async def claim_requests_txn(
        self, conn: Conn, requests: Sequence[tuple[str, str, bytes]]
    ) -> dict[tuple[str, str], IngestOutcome | None]:
        """:meth:`claim_request_txn` for several requests at once (distinct ``(system id,
        key)`` pairs, with their body hashes): claimed in key order, so two transactions never
        wait on each other in a cycle. None for a new request, else its retry's answer."""
        ordered = sorted(requests)
        fresh_rows = await conn.fetch(
            """INSERT INTO alert_requests (system_id, idempotency_key, body_sha256)
               SELECT * FROM unnest($1::uuid[], $2::text[], $3::bytea[]) ORDER BY 1, 2
               ON CONFLICT DO NOTHING RETURNING system_id, idempotency_key""",
            [uuid.UUID(s) for s, _, _ in ordered],
            [k for _, k, _ in ordered],
            [h for _, _, h in ordered],
        )
        fresh = {(str(r["system_id"]), r["idempotency_key"]) for r in fresh_rows}
        out: dict[tuple[str, str], IngestOutcome | None] = {(s, k): None for s, k, _ in ordered if (s, k) in fresh}
        seen = [(s, k, h) for s, k, h in ordered if (s, k) not in fresh]
        if not seen:
            return out
        rows = await conn.fetch(
            """SELECT r.system_id, r.idempotency_key, r.body_sha256, r.alert_ids
               FROM alert_requests r JOIN unnest($1::uuid[], $2::text[]) AS v(s, k) ON r.system_id = v.s AND r.idempotency_key = v.k""",
            [uuid.UUID(s) for s, _, _ in seen],
            [k for _, k, _ in seen],
        )
        # the conflicting inserts committed: their rows are visible now
        found = {(str(r["system_id"]), r["idempotency_key"]): r for r in rows}
        wanted = [i for s, k, h in seen if found[(s, k)]["body_sha256"] == h for i in found[(s, k)]["alert_ids"]]
        by_id = {rec.id: rec for rec in await self._by_ids(conn, wanted)} if wanted else {}
        for s, k, h in seen:
            row = found[(s, k)]
            if row["body_sha256"] != h:
                out[(s, k)] = IngestOutcome("conflict")
            else:
                out[(s, k)] = IngestOutcome("replayed", [by_id[str(i)] for i in row["alert_ids"] if str(i) in by_id])
        return out

    @staticmethod
    async def release_requests_txn(conn: Conn, requests: Sequence[tuple[str, str]]) -> None:
        """Give back keys claimed in this transaction whose request was refused (a corrected
        request may use them)."""
        await conn.execute(
            """DELETE FROM alert_requests r USING unnest($1::uuid[], $2::text[]) AS v(s, k)
               WHERE r.system_id = v.s AND r.idempotency_key = v.k""",
            [uuid.UUID(s) for s, _ in requests],
            [k for _, k in requests],
        )

    @staticmethod
    async def recipients_txn(conn: Conn, usernames: Sequence[str]) -> Recipients:
        """The recipients that exist, by username, with their preferences and wrapped data
        keys (one statement)."""
        rows = await conn.fetch(
            """SELECT u.id, u.username, u.display_name, u.role, u.org_id, u.rm_id, u.disabled, u.segment, u.tags, u.widget_visitor,
                      p.user_id AS p_user, p.muted, p.quiet_start, p.quiet_end, p.timezone, p.locale,
                      k.kek_id AS k_kek, k.wrapped_dek AS k_wrapped
               FROM users u LEFT JOIN alert_preferences p ON p.user_id = u.id
                    LEFT JOIN alert_keys k ON k.user_id = u.id
               WHERE u.username = ANY($1::text[])""",
            list(set(usernames)),
        )
        return Recipients(
            by_username={r["username"]: Recipient(user_from_row(r), _prefs(r)) for r in rows},
            known_keys={r["id"]: (r["k_kek"], r["k_wrapped"]) for r in rows if r["k_wrapped"] is not None},
        )

    async def write_txn(
        self, conn: Conn, system_id: str, idempotency_key: str, planned: list[PlannedAlert], recipients: Recipients
    ) -> list[AlertRecord]:
        """Store the planned alerts of a claimed request (see :meth:`claim_request_txn`)."""
        owner = (uuid.UUID(system_id), idempotency_key)
        return await self._write(conn, [owner] * len(planned), planned, recipients.known_keys)

    async def write_many_txn(
        self, conn: Conn, requests: Sequence[tuple[str, str]], planned: list[PlannedAlert], recipients: Recipients
    ) -> list[AlertRecord]:
        """Store the planned alerts of several claimed requests at once (a group commit of
        single alerts): ``requests[i]`` is the ``(system id, idempotency key)`` that
        ``planned[i]`` belongs to. The alerts are written as if the requests came one after
        the other in this order (seqs, collapse keys)."""
        owners = [(uuid.UUID(sid), key) for sid, key in requests]
        return await self._write(conn, owners, planned, recipients.known_keys)

    async def _write(
        self,
        conn: Conn,
        owners: list[tuple[uuid.UUID, str]],
        planned: list[PlannedAlert],
        known_keys: dict[uuid.UUID, tuple[str, bytes]],
    ) -> list[AlertRecord]:
        live = [p for p in planned if p.stored]
        users = [uuid.UUID(p.user_id) for p in live]
        seqs: dict[uuid.UUID, int] = {}
        replaces: dict[uuid.UUID, uuid.UUID] = {}
        superseded_in_batch: dict[uuid.UUID, uuid.UUID] = {}
        if live:
            # collapse keys: within the batch only the last alert per (user, key) stays live
            newest: dict[tuple[uuid.UUID, str], PlannedAlert] = {}
            for p, u in zip(live, users, strict=True):
                if p.collapse_key is not None:
                    newest[(u, p.collapse_key)] = p
            for p, u in zip(live, users, strict=True):
                if p.collapse_key is not None and newest[(u, p.collapse_key)] is not p:
                    superseded_in_batch[p.id] = newest[(u, p.collapse_key)].id
            counts: dict[uuid.UUID, int] = {}
            fresh: dict[uuid.UUID, int] = {}
            for p, u in zip(live, users, strict=True):
                counts[u] = counts.get(u, 0) + 1
                fresh[u] = fresh.get(u, 0) + (p.id not in superseded_in_batch)
            order = sorted(counts)
            # one statement creates missing inbox rows, locks them in user-id order, allocates
            # the seqs (last_seq moves by the number of alerts per user) and counts the new
            # unread ones
            tops = await conn.fetch(
                """INSERT INTO alert_inbox AS i (user_id, last_seq, unread)
                   SELECT * FROM unnest($1::uuid[], $2::bigint[], $3::bigint[]) ORDER BY 1
                   ON CONFLICT (user_id) DO UPDATE SET last_seq = i.last_seq + EXCLUDED.last_seq,
                                                       unread = i.unread + EXCLUDED.unread
                   RETURNING i.user_id, i.last_seq""",
                order,
                [counts[u] for u in order],
                [fresh[u] for u in order],
            )
            next_seq = {r["user_id"]: r["last_seq"] - counts[r["user_id"]] for r in tops}
            for p, u in zip(live, users, strict=True):
                next_seq[u] += 1
                seqs[p.id] = next_seq[u]
            if newest:
                # the newest of a key replaces the live alert with that key already in the inbox
                keys = list(newest)
                old = await conn.fetch(
                    """UPDATE alerts a SET superseded_by = v.new_id, superseded_at = now()
                       FROM unnest($1::uuid[], $2::text[], $3::uuid[]) AS v(user_id, key, new_id)
                       WHERE a.user_id = v.user_id AND a.collapse_key = v.key AND a.seq IS NOT NULL
                         AND a.superseded_by IS NULL
                       RETURNING a.id, a.user_id, v.new_id, (a.state = 'unread' AND a.expired_at IS NULL) AS counted""",
                    [k[0] for k in keys],
                    [k[1] for k in keys],
                    [newest[k].id for k in keys],
                )
                replaced: dict[uuid.UUID, int] = {}
                for r in old:
                    replaces[r["new_id"]] = r["id"]
                    if r["counted"]:
                        replaced[r["user_id"]] = replaced.get(r["user_id"], 0) + 1
                await _take_unread(conn, replaced)
                if old:
                    await conn.execute(
                        """UPDATE alert_fallback SET state = 'cancelled', cancel_reason = 'superseded', updated_at = now()
                           WHERE alert_id = ANY($1::uuid[]) AND state = 'pending'""",
                        [r["id"] for r in old],
                    )
        data_keys = await self._user_keys(conn, [uuid.UUID(p.user_id) for p in planned], known_keys)
        sealed = [seal(data_keys[uuid.UUID(p.user_id)], str(p.id), p.user_id, p.title, p.body) for p in planned]
        # the request row learns its alerts in the same statement (a retry returns them)
        rows = await conn.fetch(
            f"""WITH request AS (
                    UPDATE alert_requests r SET alert_ids = g.ids
                    FROM (SELECT x.s, x.k, array_agg(x.id ORDER BY x.o) AS ids
                          FROM unnest($1::uuid[], $16::text[], $2::uuid[]) WITH ORDINALITY AS x(s, k, id, o)
                          GROUP BY x.s, x.k) g
                    WHERE r.system_id = g.s AND r.idempotency_key = g.k)
                INSERT INTO alerts AS a (id, system_id, user_id, seq, category, priority, template, locale, content,
                                    content_key_id, collapse_key, silent, expires_at, state, superseded_by, superseded_at,
                                    replaces)
                SELECT v.id, v.system_id, v.user_id, v.seq, v.category, v.priority, v.template, v.locale, v.content, $17,
                       v.collapse_key, v.silent, v.expires_at,
                       CASE WHEN v.seq IS NULL THEN 'suppressed' ELSE 'unread' END,
                       v.superseded_by, CASE WHEN v.superseded_by IS NOT NULL THEN now() END, v.replaces
                FROM unnest($2::uuid[], $3::uuid[], $4::bigint[], $5::text[], $6::text[], $7::text[], $8::text[],
                            $9::bytea[], $10::text[], $11::text[], $12::bool[], $13::timestamptz[], $14::uuid[], $15::uuid[],
                            $1::uuid[])
                     AS v(id, user_id, seq, category, priority, template, locale, content, unused, collapse_key, silent,
                          expires_at, superseded_by, replaces, system_id)
                RETURNING {_ALERT_COLS}""",
            [sid for sid, _ in owners],
            [p.id for p in planned],
            [uuid.UUID(p.user_id) for p in planned],
            [seqs.get(p.id) for p in planned],
            [p.category for p in planned],
            [p.priority for p in planned],
            [p.template for p in planned],
            [p.locale for p in planned],
            sealed,
            [None for _ in planned],
            [p.collapse_key for p in planned],
            [p.silent for p in planned],
            [p.expires_at for p in planned],
            [superseded_in_batch.get(p.id) for p in planned],
            [replaces.get(p.id) for p in planned],
            [key for _, key in owners],
            CONTENT_KEY_ID,
        )
        fallback = [p for p in live if p.fallback_at is not None and p.id not in superseded_in_batch]
        if fallback:
            await conn.execute(
                """INSERT INTO alert_fallback (alert_id, state, next_at)
                   SELECT id, 'pending', at FROM unnest($1::uuid[], $2::timestamptz[]) AS v(id, at)""",
                [p.id for p in fallback],
                [p.fallback_at for p in fallback],
            )
        by_id = {r["id"]: _record(r) for r in rows}
        for p in planned:
            rec = by_id[p.id]
            rec.title, rec.body = p.title, p.body
            if p.fallback_at is not None and p.stored and p.id not in superseded_in_batch:
                rec.fallback = {"state": "pending", "attempts": 0, "next_at": p.fallback_at, "last_error": None,
                                "cancel_reason": None, "sent_at": None, "dead_at": None}  # fmt: skip
        return [by_id[p.id] for p in planned]

    async def _by_ids(self, conn: Conn, ids: list[uuid.UUID]) -> list[AlertRecord]:
        rows = await conn.fetch(
            f"""SELECT {_ALERT_COLS}, {_TEXT_COLS}, {_FALLBACK_COLS}
                FROM {_WITH_KEYS} LEFT JOIN alert_fallback f ON f.alert_id = a.id WHERE a.id = ANY($1::uuid[])""",
            ids,
        )
        by_id = {r.id: r for r in await self._with_text(rows, fallback=True)}
        return [by_id[str(i)] for i in ids if str(i) in by_id]

    # --- reads ---------------------------------------------------------------------------

    async def status(self, alert_id: str) -> tuple[AlertRecord, str] | None:
        """One alert with its fallback state and its recipient's username (the status query)."""
        try:
            key = uuid.UUID(alert_id)
        except ValueError:
            return None
        async with self.db.connection("alert_status") as conn:
            row = await conn.fetchrow(
                f"""SELECT {_ALERT_COLS}, {_FALLBACK_COLS}, u.username FROM alerts a
                    JOIN users u ON u.id = a.user_id LEFT JOIN alert_fallback f ON f.alert_id = a.id
                    WHERE a.id = $1""",
                key,
            )
        return None if row is None else (_record(row, fallback=True), row["username"])

    async def counts(self, user_id: str, conn: Conn | None = None) -> InboxCounts:
        """The inbox's last seq and exact unread count (expired-but-unswept alerts left out)."""
        sql = f"""SELECT i.last_seq, i.unread - (SELECT count(*) FROM alerts a WHERE a.user_id = i.user_id AND {_COUNTED}
                                                  AND a.expires_at IS NOT NULL AND a.expires_at <= now()) AS unread
                  FROM alert_inbox i WHERE i.user_id = $1"""
        if conn is None:
            async with self.db.connection("alert_inbox_counts") as c:
                row = await c.fetchrow(sql, uuid.UUID(user_id))
        else:
            row = await conn.fetchrow(sql, uuid.UUID(user_id))
        return InboxCounts(0, 0) if row is None else InboxCounts(int(row["last_seq"]), int(row["unread"]))

    async def page(self, user_id: str, states: Sequence[str], before_seq: int | None, limit: int) -> tuple[list[AlertRecord], bool, InboxCounts]:
        """Deliverable alerts in ``states``, newest first, with seq < ``before_seq``."""
        async with self.db.connection("alert_inbox_page") as conn:
            rows = await conn.fetch(
                f"""SELECT {_ALERT_COLS}, {_TEXT_COLS} FROM {_WITH_KEYS}
                    WHERE a.user_id = $1 AND {_DELIVERABLE} AND a.state = ANY($2::text[]) AND a.seq < $3
                    ORDER BY a.seq DESC LIMIT $4""",
                uuid.UUID(user_id),
                list(states),
                before_seq if before_seq is not None else 2**62,
                limit + 1,
            )
            counts = await self.counts(user_id, conn)
        return await self._with_text(rows[:limit]), len(rows) > limit, counts

    async def for_compliance(
        self, user_ids: Sequence[str], since: dt.datetime | None, until: dt.datetime | None, limit: int
    ) -> list[AlertRecord]:
        """Every alert of ``user_ids`` created in ``[since, until)`` (suppressed, superseded and
        expired ones too), oldest first, with its text opened as the inbox does. For the
        audited eDiscovery export only."""
        async with self.db.connection("alerts_compliance") as conn:
            rows = await conn.fetch(
                f"""SELECT {_ALERT_COLS}, {_TEXT_COLS} FROM {_WITH_KEYS}
                    WHERE a.user_id = ANY($1::uuid[]) AND ($2::timestamptz IS NULL OR a.created_at >= $2)
                      AND ($3::timestamptz IS NULL OR a.created_at < $3)
                    ORDER BY a.created_at, a.id LIMIT $4""",
                [uuid.UUID(u) for u in user_ids],
                since,
                until,
                limit,
            )
        return await self._with_text(rows)

    async def since(self, user_id: str, since: int, limit: int) -> InboxSince:
        """The inbox stream after ``since``: up to ``limit`` seqs scanned, deliverable ones returned.

        ``cursor`` is the last seq scanned (the client holds everything up to it);
        ``has_more`` says there is more after it.
        """
        async with self.db.connection("alert_inbox_since", acquire_timeout=5.0) as conn:
            counts = await self.counts(user_id, conn)
            rows = await conn.fetch(
                f"""SELECT {_ALERT_COLS}, {_TEXT_COLS}, ({_DELIVERABLE}) AS deliverable FROM {_WITH_KEYS}
                    WHERE a.user_id = $1 AND a.seq > $2 ORDER BY a.seq LIMIT $3""",
                uuid.UUID(user_id),
                since,
                limit,
            )
        # nothing after ``since``: the client is up to date (or claims seqs this inbox never
        # had, say after a restore): either way its position is the inbox's last seq
        cursor = rows[-1]["seq"] if rows else counts.last_seq
        return InboxSince(
            alerts=await self._with_text([r for r in rows if r["deliverable"]]),
            cursor=cursor,
            last_seq=counts.last_seq,
            unread=counts.unread,
            has_more=bool(rows) and cursor < counts.last_seq,
        )

    async def range(self, user_id: str, after: int, upto: int) -> list[AlertRecord]:
        """Deliverable alerts with ``after < seq <= upto`` (a connection filling a gap)."""
        async with self.db.connection("alert_inbox_range") as conn:
            rows = await conn.fetch(
                f"""SELECT {_ALERT_COLS}, {_TEXT_COLS} FROM {_WITH_KEYS}
                    WHERE a.user_id = $1 AND a.seq > $2 AND a.seq <= $3 AND {_DELIVERABLE} ORDER BY a.seq""",
                uuid.UUID(user_id),
                after,
                upto,
            )
        return await self._with_text(rows)

    # --- inbox state ---------------------------------------------------------------------

    async def mark(
        self, conn: Conn, user_id: str, state: str, alert_ids: Sequence[str], up_to_seq: int | None
    ) -> tuple[list[str], InboxCounts]:
        """Mark my alerts ``read`` or ``archived`` (by id, and/or every seq <= ``up_to_seq``).

        Archiving marks read too. Returns the alerts whose state changed and the counts.
        Ids that are not mine are ignored (the caller cannot tell them from unknown ids).
        Runs in the caller's transaction.
        """
        if state not in ("read", "archived"):
            raise ValueError(state)
        uid = uuid.UUID(user_id)
        ids = []
        for a in alert_ids:
            try:
                ids.append(uuid.UUID(a))
            except ValueError:
                continue
        from_states = ["unread"] if state == "read" else ["unread", "read"]
        await _lock_inboxes(conn, [uid])
        rows = await conn.fetch(
            f"""UPDATE alerts a SET state = $2,
                       read_at = COALESCE(a.read_at, now()),
                       archived_at = CASE WHEN $2 = 'archived' THEN now() ELSE a.archived_at END
                FROM (SELECT id, ({_COUNTED}) AS counted FROM alerts a
                      WHERE a.user_id = $1 AND a.seq IS NOT NULL AND a.state = ANY($3::text[])
                        AND (a.id = ANY($4::uuid[]) OR a.seq <= $5)) old
                WHERE a.id = old.id
                RETURNING a.id, old.counted""",
            uid,
            state,
            from_states,
            ids,
            up_to_seq if up_to_seq is not None else -1,
        )
        counted = sum(1 for r in rows if r["counted"])
        if counted:
            await _take_unread(conn, {uid: counted})
        counts = await self.counts(user_id, conn)
        return [str(r["id"]) for r in rows], counts

    async def mark_delivered(self, alert_ids: Sequence[str]) -> int:
        """Note the first online delivery of these alerts (one statement for a whole flush)."""
        if not alert_ids:
            return 0
        async with self.db.connection("alerts_delivered") as conn:
            status = await conn.execute(
                "UPDATE alerts SET delivered_at = now() WHERE id = ANY($1::uuid[]) AND delivered_at IS NULL",
                [uuid.UUID(a) for a in alert_ids],
            )
        return _count(status)

    async def sweep_expired(self, limit: int = 500) -> int:
        """Take unread alerts past ``expires_at`` out of their inbox's unread count.

        Safe on every node at once: the candidates are locked with SKIP LOCKED, the inbox
        rows then in user-id order (the order every writer uses). Returns how many.
        """
        async with self.db.transaction("alerts_sweep_expired") as conn:
            cand = await conn.fetch(
                f"""SELECT a.id, a.user_id FROM alerts a WHERE {_COUNTED} AND a.expires_at IS NOT NULL
                    AND a.expires_at <= now() ORDER BY a.expires_at LIMIT $1""",
                limit,
            )
            if not cand:
                return 0
            await _lock_inboxes(conn, [r["user_id"] for r in cand])
            rows = await conn.fetch(
                f"""UPDATE alerts a SET expired_at = now() WHERE a.id = ANY($1::uuid[]) AND {_COUNTED}
                    RETURNING a.user_id""",
                [r["id"] for r in cand],
            )
            per_user: dict[uuid.UUID, int] = {}
            for r in rows:
                per_user[r["user_id"]] = per_user.get(r["user_id"], 0) + 1
            await _take_unread(conn, per_user)
        return len(rows)

    # --- preferences ---------------------------------------------------------------------

    async def preferences(self, user_id: str) -> Preferences:
        async with self.db.connection("alert_preferences") as conn:
            row = await conn.fetchrow(
                """SELECT user_id AS p_user, muted, quiet_start, quiet_end, timezone, locale
                   FROM alert_preferences WHERE user_id = $1""",
                uuid.UUID(user_id),
            )
        return DEFAULT_PREFERENCES if row is None else _prefs(row)

    async def set_preferences(self, user_id: str, prefs: Preferences) -> None:
        async with self.db.connection("alert_preferences_set") as conn:
            await conn.execute(
                """INSERT INTO alert_preferences (user_id, muted, quiet_start, quiet_end, timezone, locale)
                   VALUES ($1, $2, $3, $4, $5, $6)
                   ON CONFLICT (user_id) DO UPDATE SET muted = $2, quiet_start = $3, quiet_end = $4,
                       timezone = $5, locale = $6, updated_at = now()""",
                uuid.UUID(user_id),
                sorted(prefs.muted),
                prefs.quiet[0] if prefs.quiet else None,
                prefs.quiet[1] if prefs.quiet else None,
                prefs.timezone,
                prefs.locale,
            )

    # --- fallback ------------------------------------------------------------------------

    async def claim_fallback(self, limit: int, lease: dt.timedelta) -> list[FallbackJob]:
        """Take up to ``limit`` due fallback jobs for this node.

        Rows are locked with SKIP LOCKED and their ``next_at`` moved ``lease`` ahead in the
        same statement, so no other node takes them while this one works (and one that dies
        mid-attempt only delays them). Each claim counts as an attempt.
        """
        async with self.db.transaction("alert_fallback_claim") as conn:
            rows = await conn.fetch(
                f"""WITH due AS (
                        SELECT alert_id FROM alert_fallback WHERE state = 'pending' AND next_at <= now()
                        ORDER BY next_at LIMIT $1 FOR UPDATE SKIP LOCKED),
                    claimed AS (
                        UPDATE alert_fallback f SET next_at = now() + $2::interval, attempts = f.attempts + 1,
                               updated_at = now()
                        FROM due WHERE f.alert_id = due.alert_id RETURNING f.alert_id, f.attempts)
                    SELECT {_ALERT_COLS}, {_TEXT_COLS}, u.username, c.attempts AS claimed_attempts
                    FROM claimed c JOIN alerts a ON a.id = c.alert_id LEFT JOIN alert_keys k ON k.user_id = a.user_id
                         JOIN users u ON u.id = a.user_id""",
                limit,
                lease,
            )
        records = await self._with_text(rows)
        return [FallbackJob(rec, r["username"], int(r["claimed_attempts"])) for rec, r in zip(records, rows, strict=True)]

    async def fallback_done(self, alert_id: str, *, state: str, next_in: dt.timedelta | None = None, error: str | None = None, reason: str | None = None) -> None:
        """Record an attempt's outcome: ``sent``, ``pending`` (retry after ``next_in``),
        ``dead`` (dead-letter list) or ``cancelled`` (``reason``)."""
        async with self.db.connection("alert_fallback_done") as conn:
            await conn.execute(
                """UPDATE alert_fallback SET state = $2,
                       next_at = CASE WHEN $2 = 'pending' THEN now() + $3::interval ELSE next_at END,
                       last_error = COALESCE($4, last_error), cancel_reason = $5,
                       sent_at = CASE WHEN $2 = 'sent' THEN now() ELSE sent_at END,
                       dead_at = CASE WHEN $2 = 'dead' THEN now() ELSE dead_at END,
                       updated_at = now()
                   WHERE alert_id = $1""",
                uuid.UUID(alert_id),
                state,
                next_in or dt.timedelta(0),
                error,
                reason,
            )

    async def dead_letters(
        self, limit: int, *, after: tuple[dt.datetime, uuid.UUID] | None = None
    ) -> list[tuple[AlertRecord, str, tuple[dt.datetime, uuid.UUID]]]:
        """Up to ``limit`` dead letters (alerts the fallback channel gave up on), newest first
        (``dead_at``, then alert id, descending), after the sort key ``after`` when given;
        each with its recipient's username and its sort key."""
        async with self.db.connection("alert_dead_letters") as conn:
            rows = await conn.fetch(
                f"""SELECT {_ALERT_COLS}, {_FALLBACK_COLS}, u.username FROM alert_fallback f
                    JOIN alerts a ON a.id = f.alert_id JOIN users u ON u.id = a.user_id
                    WHERE f.state = 'dead' AND ($2::timestamptz IS NULL OR (f.dead_at, f.alert_id) < ($2::timestamptz, $3::uuid))
                    ORDER BY f.dead_at DESC, f.alert_id DESC LIMIT $1""",
                limit,
                *(after if after else (None, None)),
            )
        return [(_record(r, fallback=True), r["username"], (r["f_dead_at"], r["id"])) for r in rows]

    async def replay(self, alert_ids: Sequence[str] | None) -> list[str]:
        """Put dead letters back in the queue (all of them when ``alert_ids`` is None), due now,
        with a fresh attempt count. Returns the alerts requeued."""
        async with self.db.connection("alert_dead_letters_replay") as conn:
            rows = await conn.fetch(
                """UPDATE alert_fallback SET state = 'pending', attempts = 0, next_at = now(), dead_at = NULL,
                          updated_at = now()
                   WHERE state = 'dead' AND ($1::uuid[] IS NULL OR alert_id = ANY($1::uuid[]))
                   RETURNING alert_id""",
                None if alert_ids is None else [uuid.UUID(a) for a in alert_ids],
            )
        return [str(r["alert_id"]) for r in rows]

    # --- key rotation ----------------------------------------------------------------------

    async def keys_not_under(self, kek_id: str, after: uuid.UUID | None, limit: int) -> list[tuple[uuid.UUID, str, bytes]]:
        """Up to ``limit`` alert data keys wrapped under another KEK than ``kek_id``, by user id after ``after``."""
        async with self.db.connection("alert_keys_to_rewrap") as conn:
            rows = await conn.fetch(
                """SELECT user_id, kek_id, wrapped_dek FROM alert_keys WHERE kek_id <> $1 AND user_id > $2
                   ORDER BY user_id LIMIT $3""",
                kek_id,
                after or uuid.UUID(int=0),
                limit,
            )
        return [(r["user_id"], r["kek_id"], r["wrapped_dek"]) for r in rows]

    async def rewrap_keys(self, items: Sequence[tuple[uuid.UUID, str, bytes, str, bytes]]) -> int:
        """Replace wrapped alert data keys ``(user, old kek, old wrapped, new kek, new wrapped)``
        that still hold the old bytes; returns how many changed."""
        if not items:
            return 0
        async with self.db.transaction("rewrap_alert_keys") as conn:
            status = await conn.execute(
                """UPDATE alert_keys k SET kek_id = v.new_kek, wrapped_dek = v.new_wrapped
                   FROM unnest($1::uuid[], $2::text[], $3::bytea[], $4::text[], $5::bytea[])
                        AS v(id, old_kek, old_wrapped, new_kek, new_wrapped)
                   WHERE k.user_id = v.id AND k.kek_id = v.old_kek AND k.wrapped_dek = v.old_wrapped""",
                [i[0] for i in items],
                [i[1] for i in items],
                [i[2] for i in items],
                [i[3] for i in items],
                [i[4] for i in items],
            )
        return _count(status)

    async def key_counts(self) -> dict[str, int]:
        """How many alert data keys each KEK wraps."""
        async with self.db.connection("alert_key_counts") as conn:
            rows = await conn.fetch("SELECT kek_id, count(*) AS n FROM alert_keys GROUP BY kek_id")
        return {r["kek_id"]: int(r["n"]) for r in rows}
