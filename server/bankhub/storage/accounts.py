"""Storage for official accounts, their followers and notices
(``official_accounts``, ``account_follows``, ``notices``).

Cost model — what makes broadcast O(1) in the number of followers:

* publishing writes one notice row and bumps the account's ``last_seq`` (plus one audit
  row), whatever the number of followers;
* a follower's inbox state is one row per account (``account_follows.read_seq``); unread
  counts, history and sync are derived at read time from the notices after it that target
  the follower (the rule of :mod:`bankhub.targeting`, written here in SQL);
* the online delivered count is summed per node (:meth:`AccountStore.add_delivered`);
* the publisher figures of a notice addressed to every follower (targeted followers, read)
  are counters kept by triggers in the transactions that follow, unfollow, read and publish
  (delta 0026): a base on the notice row plus up to 64 slot rows (``notice_counts``, the slot
  chosen by the follower's user id, so readers of one notice do not queue on one row):
  :meth:`AccountStore.stats` reads at most 65 rows, whatever the number of followers.
  A follow records the stream position it happened at (``account_follows.since_seq``),
  under a share lock of the account row that a publication's update waits for, so
  "followed before the notice" is decided in stream order.

Every publication and every recall takes the next seq of its account's event stream,
under the account row lock, so the stream is gap-free and gateway nodes can detect a
missed broadcast and fill it from :meth:`AccountStore.events`.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import msgspec

from ..models import AccountKey, FollowedAccount, NoticeEventRow, NoticeRecord, NoticeStats, OfficialAccount, Role, Target
from ..protocol.frames import AccountSync, Notice, NoticeBody, Signature
from ..text import StoredDecoder
from .db import Conn, Database

__all__ = ["AccountStore", "notice_from_row"]

_body_decoder = StoredDecoder[NoticeBody](NoticeBody)  # rows may predate the text constraints
_signature_decoder = msgspec.json.Decoder(Signature)

# The follower "me": their org path (own org first), tags, segment and role. $1 = user id.
_ME = """me AS (
    SELECT u.id, u.tags, u.segment, u.role,
           ARRAY(WITH RECURSIVE up(id, parent_id) AS (
                     SELECT o.id, o.parent_id FROM orgs o WHERE o.id = u.org_id
                     UNION ALL SELECT o.id, o.parent_id FROM orgs o JOIN up ON o.id = up.parent_id)
                 SELECT id FROM up) AS path
    FROM users u WHERE u.id = $1)"""

# bankhub.targeting.matches, in SQL, for the follower "me" and the notice "n"
_TARGETS_ME = """(n.target_org_ids IS NULL OR n.target_org_ids && me.path)
    AND (n.target_tags IS NULL OR n.target_tags && me.tags)
    AND (n.target_segments IS NULL OR me.segment = ANY (n.target_segments))
    AND (NOT n.staff_only OR me.role <> 'customer')"""

# bankhub.targeting.matches over an account's followers, counted: the targeted audience of a
# targeted notice (its figures) and of a draft (the live count before sending). $1 account, $2
# the read position counted as "read" (NULL: none), $3 target org ids, $4 the notice's seq: who
# followed before it in the account's stream (``since_seq < seq``; NULL: any follower), $5 tags,
# $6 segments, $7 staff only. The account id is a parameter, so the plan starts from the
# account's follows rather than from every user. A notice addressed to every follower is not
# counted here: its figures are counters (delta 0026), and this is their recount.
_TARGETED_FOLLOWERS = """WITH RECURSIVE sub(id) AS (
        SELECT o.id FROM orgs o WHERE o.id = ANY ($3::uuid[])
        UNION SELECT o.id FROM orgs o JOIN sub ON o.parent_id = sub.id)
    SELECT count(*) AS targeted, count(*) FILTER (WHERE f.read_seq >= $2::bigint) AS read
    FROM account_follows f JOIN users u ON u.id = f.user_id
    WHERE f.account_id = $1 AND ($4::bigint IS NULL OR f.since_seq < $4)
      AND ($3::uuid[] IS NULL OR u.org_id IN (SELECT id FROM sub))
      AND ($5::text[] IS NULL OR $5::text[] && u.tags)
      AND ($6::text[] IS NULL OR u.segment = ANY ($6::text[]))
      AND (NOT $7 OR u.role <> 'customer')"""

_NOTICE_COLS = """n.id, n.account_id, n.seq, n.status, n.kind, n.body::text AS body, n.target_org_ids, n.target_tags,
    n.target_segments, n.staff_only, n.author_id, n.approved_by, n.rejected_by, n.scheduled_at, n.published_at,
    n.recall_seq, n.recalled_at, n.recalled_by, n.recall_reason, n.delivered_online, n.created_at,
    n.signature::text AS signature"""

_ACCOUNT_COLS = """a.id, a.handle, a.name, a.description, a.owner_org_id, a.audience, a.is_default,
    a.requires_approval, a.last_seq,
    ARRAY(WITH RECURSIVE up(id, parent_id) AS (
              SELECT o.id, o.parent_id FROM orgs o WHERE o.id = a.owner_org_id
              UNION ALL SELECT o.id, o.parent_id FROM orgs o JOIN up ON o.id = up.parent_id)
          SELECT id::text FROM up) AS owner_org_path"""


def _uuids(ids: Sequence[str] | None) -> list[uuid.UUID] | None:
    return None if ids is None else [uuid.UUID(i) for i in ids]


def account_from_row(row: Any) -> OfficialAccount:
    return OfficialAccount(
        id=str(row["id"]),
        handle=row["handle"],
        name=row["name"],
        description=row["description"],
        owner_org_id=str(row["owner_org_id"]),
        audience=row["audience"],
        is_default=row["is_default"],
        requires_approval=row["requires_approval"],
        last_seq=row["last_seq"],
        owner_org_path=tuple(row["owner_org_path"]),
    )


def _opt_str(v: Any) -> str | None:
    return None if v is None else str(v)


def record_from_row(row: Any) -> NoticeRecord:
    return NoticeRecord(
        id=str(row["id"]),
        account_id=str(row["account_id"]),
        status=row["status"],
        body=_body_decoder.decode(row["body"]),
        target=Target(
            org_ids=None if row["target_org_ids"] is None else [str(o) for o in row["target_org_ids"]],
            tags=None if row["target_tags"] is None else list(row["target_tags"]),
            segments=None if row["target_segments"] is None else list(row["target_segments"]),
            staff_only=row["staff_only"],
        ),
        author_id=str(row["author_id"]),
        created_at=row["created_at"],
        seq=row["seq"],
        approved_by=_opt_str(row["approved_by"]),
        rejected_by=_opt_str(row["rejected_by"]),
        scheduled_at=row["scheduled_at"],
        published_at=row["published_at"],
        recall_seq=row["recall_seq"],
        recalled_at=row["recalled_at"],
        recalled_by=_opt_str(row["recalled_by"]),
        recall_reason=row["recall_reason"],
        delivered_online=row["delivered_online"],
        signature=None if row["signature"] is None else _signature_decoder.decode(row["signature"]),
    )


def notice_from_row(row: Any) -> Notice:
    return record_from_row(row).as_notice()


class AccountStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    # --- accounts and followers -------------------------------------------------------

    async def create(
        self,
        *,
        handle: str,
        name: str,
        description: str,
        owner_org_id: str,
        audience: str,
        is_default: bool,
        requires_approval: bool,
        created_by: str,
        conn: Conn | None = None,
    ) -> OfficialAccount | None:
        """Create an account; None when the handle is taken."""
        sql = f"""WITH a AS (
                    INSERT INTO official_accounts (id, handle, name, description, owner_org_id, audience, is_default,
                                                   requires_approval, created_by)
                    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (handle) DO NOTHING RETURNING *)
                  SELECT {_ACCOUNT_COLS} FROM a"""
        args = (
            uuid.uuid4(),
            handle,
            name,
            description,
            uuid.UUID(owner_org_id),
            audience,
            is_default,
            requires_approval,
            uuid.UUID(created_by),
        )
        if conn is not None:
            row = await conn.fetchrow(sql, *args)
        else:
            async with self.db.connection("account_create") as c:
                row = await c.fetchrow(sql, *args)
        return None if row is None else account_from_row(row)

    async def get(self, account_id: str) -> OfficialAccount | None:
        try:
            key = uuid.UUID(account_id)
        except ValueError:
            return None
        async with self.db.connection("account_get") as conn:
            row = await conn.fetchrow(f"SELECT {_ACCOUNT_COLS} FROM official_accounts a WHERE a.id = $1", key)
        return None if row is None else account_from_row(row)

    async def search(self, query: str, limit: int, *, after: AccountKey | None = None) -> list[OfficialAccount]:
        """Up to ``limit`` accounts whose handle or name contains ``query``, default accounts
        first, then by name and id (:func:`~bankhub.models.account_key`), after ``after`` when given (keyset
        paging). The caller filters by visibility."""
        pattern = "%" + query.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        async with self.db.connection("account_search") as conn:
            rows = await conn.fetch(
                f"""SELECT {_ACCOUNT_COLS} FROM official_accounts a
                    WHERE (a.handle ILIKE $1 OR a.name ILIKE $1)
                      AND ($3::bool IS NULL OR (NOT a.is_default, a.name, a.id) > ($3::bool, $4::text, $5::uuid))
                    ORDER BY NOT a.is_default, a.name, a.id LIMIT $2""",
                pattern,
                limit,
                *(after if after else (None, None, None)),
            )
        return [account_from_row(r) for r in rows]

    @staticmethod
    async def follow(conn: Conn, account_id: str, user_id: str) -> bool:
        """Follow from now on: earlier notices are history, not unread. False if already following.
        (Delta 0026's triggers record the stream position of the follow, ``since_seq``, under
        a share lock of the account row, and count the follower in its slot of
        ``account_follower_counts``.)"""
        sql = """INSERT INTO account_follows (account_id, user_id, read_seq)
                 SELECT id, $2, last_seq FROM official_accounts WHERE id = $1
                 ON CONFLICT DO NOTHING RETURNING true"""
        return bool(await conn.fetchval(sql, uuid.UUID(account_id), uuid.UUID(user_id)))

    @staticmethod
    async def unfollow(conn: Conn, account_id: str, user_id: str) -> bool:
        """Stop following. False if not following."""
        gone = await conn.fetchval(
            "DELETE FROM account_follows WHERE account_id = $1 AND user_id = $2 RETURNING true",
            uuid.UUID(account_id),
            uuid.UUID(user_id),
        )
        return bool(gone)

    @staticmethod
    async def follow_defaults(conn: Conn, user_id: str, role: Role) -> list[str]:
        """Follow the default accounts of the user's audience (in the user's creation
        transaction): customers the default customer accounts, staff the default staff and
        customer accounts. Returns the account ids followed."""
        audiences = ["customer"] if role is Role.CUSTOMER else ["customer", "staff"]
        rows = await conn.fetch(
            """INSERT INTO account_follows (account_id, user_id, read_seq)
               SELECT id, $1, last_seq FROM official_accounts WHERE is_default AND audience = ANY ($2::text[])
                 AND (audience = 'staff' OR $3)
               ORDER BY id
               ON CONFLICT DO NOTHING RETURNING account_id""",
            uuid.UUID(user_id),
            audiences,
            role is Role.CUSTOMER,
        )
        return [str(r["account_id"]) for r in rows]

    async def following(self, user_id: str, *, after: AccountKey | None = None, limit: int | None = None) -> list[FollowedAccount]:
        """The user's followed accounts with read position and exact unread count, in
        :func:`~bankhub.models.account_key` order: all, or up to ``limit`` after ``after`` (keyset paging)."""
        async with self.db.connection("account_following") as conn:
            rows = await conn.fetch(
                f"""WITH {_ME}
                    SELECT {_ACCOUNT_COLS}, f.read_seq, f.followed_at,
                           (SELECT count(*) FROM notices n
                             WHERE n.account_id = a.id AND n.seq > f.read_seq AND n.status = 'published'
                               AND {_TARGETS_ME}) AS unread
                    FROM me JOIN account_follows f ON f.user_id = me.id
                    JOIN official_accounts a ON a.id = f.account_id
                    WHERE $2::bool IS NULL OR (NOT a.is_default, a.name, a.id) > ($2::bool, $3::text, $4::uuid)
                    ORDER BY NOT a.is_default, a.name, a.id LIMIT $5""",
                uuid.UUID(user_id),
                *(after if after else (None, None, None)),
                limit,
            )
        return [
            FollowedAccount(account=account_from_row(r), read_seq=r["read_seq"], unread=r["unread"], followed_at=r["followed_at"])
            for r in rows
        ]

    async def follow_state(self, account_id: str, user_id: str) -> int | None:
        """The user's read position in the account, or None when not following."""
        async with self.db.connection("account_follow_state") as conn:
            seq = await conn.fetchval(
                "SELECT read_seq FROM account_follows WHERE account_id = $1 AND user_id = $2",
                uuid.UUID(account_id),
                uuid.UUID(user_id),
            )
        return None if seq is None else int(seq)

    @staticmethod
    async def read(conn: Conn, account_id: str, user_id: str, seq: int) -> tuple[int, int] | None:
        """Raise the read position (never lowers it, never past the stream's end).

        Returns ``(read_seq, unread)``, or None when the user does not follow the account.
        """
        row = await conn.fetchrow(
            f"""WITH {_ME}, upd AS (
                    UPDATE account_follows f SET read_seq = GREATEST(f.read_seq, LEAST($3, a.last_seq))
                    FROM official_accounts a
                    WHERE a.id = f.account_id AND f.account_id = $2 AND f.user_id = $1
                    RETURNING f.read_seq)
                SELECT upd.read_seq,
                       (SELECT count(*) FROM notices n, me
                         WHERE n.account_id = $2 AND n.seq > upd.read_seq AND n.status = 'published'
                           AND {_TARGETS_ME}) AS unread
                FROM upd""",
            uuid.UUID(user_id),
            uuid.UUID(account_id),
            seq,
        )
        return None if row is None else (int(row["read_seq"]), int(row["unread"]))

    # --- notices: writing ------------------------------------------------------------------

    async def create_notice(
        self,
        *,
        account_id: str,
        author_id: str,
        body: NoticeBody,
        target: Target,
        status: str,
        scheduled_at: dt.datetime | None,
        conn: Conn,
    ) -> NoticeRecord:
        """Insert a notice. With status ``published`` it takes the account's next seq (the
        caller holds a transaction; the account row lock orders concurrent publications)."""
        kind = "text" if body.__struct_config__.tag == "text" else "article"
        row = await conn.fetchrow(
            f"""WITH acc AS (
                    UPDATE official_accounts SET last_seq = last_seq + 1
                    WHERE id = $2 AND $4 = 'published' RETURNING last_seq),
                n AS (
                    INSERT INTO notices (id, account_id, seq, status, kind, body, target_org_ids, target_tags,
                                         target_segments, staff_only, author_id, scheduled_at, published_at)
                    VALUES ($1, $2, (SELECT last_seq FROM acc), $4, $5, $6::jsonb, $7, $8, $9, $10, $3, $11,
                            CASE WHEN $4 = 'published' THEN now() END)
                    RETURNING *)
                SELECT {_NOTICE_COLS} FROM n""",
            uuid.uuid4(),
            uuid.UUID(account_id),
            uuid.UUID(author_id),
            status,
            kind,
            msgspec.json.encode(body).decode(),
            _uuids(target.org_ids),
            target.tags,
            target.segments,
            target.staff_only,
            scheduled_at,
        )
        return record_from_row(row)

    @staticmethod
    async def lock_notice(conn: Conn, notice_id: str, *, skip_locked: bool = False) -> NoticeRecord | None:
        try:
            key = uuid.UUID(notice_id)
        except ValueError:
            return None
        row = await conn.fetchrow(
            f"SELECT {_NOTICE_COLS} FROM notices n WHERE n.id = $1 FOR UPDATE{' SKIP LOCKED' if skip_locked else ''}",
            key,
        )
        return None if row is None else record_from_row(row)

    @staticmethod
    async def set_status(
        conn: Conn,
        notice_id: str,
        status: str,
        *,
        approved_by: str | None = None,
        rejected_by: str | None = None,
    ) -> NoticeRecord:
        """Move a notice to ``pending_approval``/``scheduled``/``rejected``, or publish it
        (``published``: takes the account's next seq under the account row lock)."""
        row = await conn.fetchrow(
            f"""WITH cur AS (SELECT account_id FROM notices WHERE id = $1),
                acc AS (
                    UPDATE official_accounts SET last_seq = last_seq + 1
                    WHERE id = (SELECT account_id FROM cur) AND $2 = 'published' RETURNING last_seq),
                n AS (
                    UPDATE notices SET status = $2,
                        seq = COALESCE((SELECT last_seq FROM acc), seq),
                        published_at = CASE WHEN $2 = 'published' THEN now() ELSE published_at END,
                        approved_by = COALESCE($3, approved_by),
                        rejected_by = COALESCE($4, rejected_by)
                    WHERE id = $1 RETURNING *)
                SELECT {_NOTICE_COLS} FROM n""",
            uuid.UUID(notice_id),
            status,
            uuid.UUID(approved_by) if approved_by else None,
            uuid.UUID(rejected_by) if rejected_by else None,
        )
        return record_from_row(row)

    @staticmethod
    async def set_signature(conn: Conn, notice_id: str, signature: Signature) -> None:
        """Store the hub's signature of a notice just published (in the publishing transaction)."""
        await conn.execute(
            "UPDATE notices SET signature = $2::jsonb WHERE id = $1", uuid.UUID(notice_id), msgspec.json.encode(signature).decode()
        )

    @staticmethod
    async def recall(conn: Conn, notice_id: str, by: str, reason: str) -> NoticeRecord:
        """Withdraw a published notice: it takes the account's next seq as its recall event.
        The body is kept for compliance; followers no longer see it."""
        row = await conn.fetchrow(
            f"""WITH acc AS (
                    UPDATE official_accounts SET last_seq = last_seq + 1
                    WHERE id = (SELECT account_id FROM notices WHERE id = $1 AND status = 'published')
                    RETURNING last_seq),
                n AS (
                    UPDATE notices SET status = 'recalled', recall_seq = (SELECT last_seq FROM acc),
                        recalled_at = now(), recalled_by = $2, recall_reason = $3
                    WHERE id = $1 AND status = 'published' RETURNING *)
                SELECT {_NOTICE_COLS} FROM n""",
            uuid.UUID(notice_id),
            uuid.UUID(by),
            reason,
        )
        return record_from_row(row)

    @staticmethod
    async def due(conn: Conn, limit: int) -> list[str]:
        """Scheduled notices whose time has come, locked for this transaction (other nodes
        running the scheduler skip them)."""
        rows = await conn.fetch(
            """SELECT id FROM notices WHERE status = 'scheduled' AND scheduled_at <= now()
               ORDER BY scheduled_at LIMIT $1 FOR UPDATE SKIP LOCKED""",
            limit,
        )
        return [str(r["id"]) for r in rows]

    async def add_delivered(self, counts: Mapping[str, int]) -> None:
        """Add this node's online deliveries: one statement per flush, whatever the fan-out."""
        if not counts:
            return
        async with self.db.connection("notice_delivered") as conn:
            await conn.execute(
                """UPDATE notices n SET delivered_online = n.delivered_online + c.k
                   FROM unnest($1::uuid[], $2::bigint[]) AS c(id, k) WHERE n.id = c.id""",
                [uuid.UUID(i) for i in counts],
                list(counts.values()),
            )

    # --- notices: reading ------------------------------------------------------------------

    async def notice(self, notice_id: str) -> NoticeRecord | None:
        try:
            key = uuid.UUID(notice_id)
        except ValueError:
            return None
        async with self.db.connection("notice_get") as conn:
            row = await conn.fetchrow(f"SELECT {_NOTICE_COLS} FROM notices n WHERE n.id = $1", key)
        return None if row is None else record_from_row(row)

    async def outbox(
        self, account_id: str, status: str | None, limit: int, *, after: tuple[dt.datetime, uuid.UUID] | None = None
    ) -> list[NoticeRecord]:
        """Up to ``limit`` of an account's notices for its administrators, optionally by
        status, newest first (``created_at``, then id, descending), after the sort key
        ``after`` when given (keyset paging)."""
        async with self.db.connection("notice_outbox") as conn:
            rows = await conn.fetch(
                f"""SELECT {_NOTICE_COLS} FROM notices n WHERE n.account_id = $1 AND ($2::text IS NULL OR n.status = $2)
                      AND ($4::timestamptz IS NULL OR (n.created_at, n.id) < ($4::timestamptz, $5::uuid))
                    ORDER BY n.created_at DESC, n.id DESC LIMIT $3""",
                uuid.UUID(account_id),
                status,
                limit,
                *(after if after else (None, None)),
            )
        return [record_from_row(r) for r in rows]

    async def events(self, account_id: str, after: int, upto: int | None) -> list[NoticeEventRow]:
        """The account's stream events in ``(after, upto]``, in order, with their audiences:
        what a gateway node fetches when it missed a broadcast."""
        async with self.db.connection("notice_events") as conn:
            rows = await conn.fetch(
                f"""SELECT {_NOTICE_COLS}, e.event_seq FROM notices n
                    CROSS JOIN LATERAL (VALUES (n.seq), (n.recall_seq)) AS e(event_seq)
                    WHERE n.account_id = $1 AND e.event_seq > $2 AND ($3::bigint IS NULL OR e.event_seq <= $3)
                      AND n.seq IS NOT NULL
                    ORDER BY e.event_seq""",
                uuid.UUID(account_id),
                after,
                upto,
            )
        out = []
        for r in rows:
            rec = record_from_row(r)
            out.append(NoticeEventRow(event_seq=r["event_seq"], notice=rec.as_notice(), target=rec.target))
        return out

    async def history(self, account_id: str, user_id: str, before_seq: int | None, limit: int) -> list[Notice]:
        """The notices of an account that target the user, newest first (recalled ones withdrawn)."""
        async with self.db.connection("notice_history") as conn:
            rows = await conn.fetch(
                f"""WITH {_ME}
                    SELECT {_NOTICE_COLS} FROM notices n, me
                    WHERE n.account_id = $2 AND n.seq IS NOT NULL AND ($3::bigint IS NULL OR n.seq < $3)
                      AND {_TARGETS_ME}
                    ORDER BY n.seq DESC LIMIT $4""",
                uuid.UUID(user_id),
                uuid.UUID(account_id),
                before_seq,
                limit,
            )
        return [notice_from_row(r) for r in rows]

    async def sync(self, user_id: str, since: Mapping[str, int], limit: int) -> list[AccountSync]:
        """For each followed account: the events for the user in ``(since, cursor]`` where
        ``cursor = min(last_seq, since + limit)``. An account missing from ``since`` starts
        at the user's read position. One statement for all accounts."""
        keys: list[uuid.UUID] = []
        seqs: list[int] = []
        for account_id, seq in since.items():
            try:
                keys.append(uuid.UUID(account_id))
            except ValueError:
                continue
            seqs.append(seq)
        async with self.db.connection("account_sync", acquire_timeout=5.0) as conn:
            rows = await conn.fetch(
                f"""WITH {_ME},
                    f AS (SELECT f.account_id, f.read_seq, a.last_seq,
                                 LEAST(COALESCE(c.since, f.read_seq), a.last_seq) AS since
                          FROM me JOIN account_follows f ON f.user_id = me.id
                          JOIN official_accounts a ON a.id = f.account_id
                          LEFT JOIN unnest($2::uuid[], $3::bigint[]) AS c(account_id, since) ON c.account_id = f.account_id),
                    w AS (SELECT f.*, LEAST(f.last_seq, f.since + $4) AS cursor FROM f)
                    SELECT w.account_id AS sync_account, w.read_seq AS sync_read_seq, w.last_seq AS sync_last_seq,
                           w.cursor AS sync_cursor,
                           (SELECT count(*) FROM notices n, me
                             WHERE n.account_id = w.account_id AND n.seq > w.read_seq AND n.status = 'published'
                               AND {_TARGETS_ME}) AS sync_unread,
                           x.*
                    FROM w LEFT JOIN LATERAL (
                        SELECT {_NOTICE_COLS} FROM notices n, me
                        WHERE n.account_id = w.account_id
                          AND ((n.seq > w.since AND n.seq <= w.cursor)
                               OR (n.recall_seq > w.since AND n.recall_seq <= w.cursor))
                          AND {_TARGETS_ME}
                        ORDER BY n.seq) x ON true
                    ORDER BY w.account_id, x.seq""",
                uuid.UUID(user_id),
                keys,
                seqs,
                limit,
            )
        out: dict[str, AccountSync] = {}
        for r in rows:
            aid = str(r["sync_account"])
            acc = out.get(aid)
            if acc is None:
                acc = out[aid] = AccountSync(
                    account_id=aid,
                    last_seq=r["sync_last_seq"],
                    read_seq=r["sync_read_seq"],
                    unread=r["sync_unread"],
                    cursor=r["sync_cursor"],
                    notices=[],
                    has_more=r["sync_cursor"] < r["sync_last_seq"],
                )
            if r["id"] is not None:
                acc.notices.append(notice_from_row(r))
        return list(out.values())

    async def audience(self, account_id: str, target: Target) -> int:
        """How many of the account's current followers ``target`` reaches: the count a notice
        published now would have as its targeted followers (the same SQL as :meth:`stats`)."""
        async with self.db.connection("notice_audience") as conn:
            count = await conn.fetchval(
                _TARGETED_FOLLOWERS,
                uuid.UUID(account_id),
                None,
                _uuids(target.org_ids),
                None,
                target.tags,
                target.segments,
                target.staff_only,
            )
        return int(count or 0)

    async def recount(self, notice_id: str) -> tuple[int, int] | None:
        """A published notice's ``(targeted followers, read)`` counted from the followers' rows
        (O(followers)), whatever its counters say: what the counters of
        :meth:`stats` must equal. None for an unknown or unpublished notice."""
        async with self.db.connection("notice_recount") as conn:
            n = await conn.fetchrow(
                """SELECT account_id, seq, target_org_ids, target_tags, target_segments, staff_only
                   FROM notices WHERE id = $1 AND seq IS NOT NULL""",
                uuid.UUID(notice_id),
            )
            if n is None:
                return None
            row = await conn.fetchrow(
                _TARGETED_FOLLOWERS, n["account_id"], n["seq"], n["target_org_ids"], n["seq"], n["target_tags"],
                n["target_segments"], n["staff_only"],
            )
        assert row is not None  # an aggregate always returns a row
        return int(row["targeted"]), int(row["read"])

    async def stats(self, notice_id: str) -> NoticeStats | None:
        """Delivery and read figures of one notice. A notice addressed to every follower
        reads its counters (the notice row and at most 64 slot rows of ``notice_counts``,
        whatever the number of followers); a targeted one counts
        its targeted followers at query time (one scan of the account's followers: their
        org, tags, segment and role may change after publication)."""
        async with self.db.connection("notice_stats") as conn:
            n = await conn.fetchrow(
                """SELECT n.id, n.account_id, n.status, n.seq, n.delivered_online, n.target_org_ids, n.target_tags,
                          n.target_segments, n.staff_only,
                          n.followers_targeted + coalesce(c.targeted, 0) AS followers_targeted,
                          n.followers_read + coalesce(c.read, 0) AS followers_read
                   FROM notices n
                   LEFT JOIN LATERAL (SELECT sum(targeted)::bigint AS targeted, sum(read)::bigint AS read
                                      FROM notice_counts WHERE notice_id = n.id) c ON n.followers_targeted IS NOT NULL
                   WHERE n.id = $1""",
                uuid.UUID(notice_id),
            )
            if n is None:
                return None
            counted = {"targeted": 0, "read": 0}
            if n["seq"] is not None and n["followers_targeted"] is not None:
                counted = {"targeted": n["followers_targeted"], "read": n["followers_read"]}
            elif n["seq"] is not None:
                # the account id is a parameter, so the plan starts from the account's follows
                # rather than from every user
                row = await conn.fetchrow(
                    _TARGETED_FOLLOWERS,
                    n["account_id"],
                    n["seq"],
                    n["target_org_ids"],
                    n["seq"],
                    n["target_tags"],
                    n["target_segments"],
                    n["staff_only"],
                )
                assert row is not None  # an aggregate always returns a row
                counted = {"targeted": row["targeted"], "read": row["read"]}
        return NoticeStats(
            notice_id=str(n["id"]),
            status=n["status"],
            targeted_followers=counted["targeted"],
            delivered_online=n["delivered_online"],
            read=counted["read"],
        )
