"""Storage for messages (``messages``) and the seq allocation on ``conversations.last_seq``.

Writes are steps of the caller's transaction (:func:`bankhub.actions.messages.commit`
stores many concurrent sends in one, group commit):

1. :meth:`MessageStore.lock_txn` locks the touched ``conversations`` rows in id order (no
   deadlocks between batches) and loads their members: the facts the caller's policy
   decides each send on (:meth:`Locked.membership`);
2. :meth:`MessageStore.append_txn` takes those verdicts, gets the data keys, allocates
   consecutive seqs after ``last_seq`` and, in one statement, checks that no
   ``client_msg_id`` of the batch is stored already (idempotent resend), writes ``last_seq``
   back, inserts the messages and raises each sender's read position to its own message.
   When the check finds resends it writes nothing; they are answered with the originals and
   the rest is written again (a second round trip, only then).

With the group commit's ``BEGIN`` (which takes the shared barrier lock in its round trip)
and ``COMMIT``, a batch of any size costs four round trips; the barrier query
(:meth:`~bankhub.storage.barriers.BarrierStore.barred_txn`) adds one only while a barrier
policy exists (:attr:`Locked.barriers`).

Because the seq is bumped under the row lock in the inserting transaction, seqs are
gap-free: a rolled-back batch allocates nothing. The returned results carry the member
list of each conversation so that the caller can publish after commit.

Bodies are encrypted at rest (:mod:`bankhub.bodies`) under each conversation's data key
(``conversation_keys``, :mod:`bankhub.storage.keys`). The append transaction reads the
batch's wrapped keys with the row lock (creating a key on a conversation's first message)
and refuses sends into a shredded conversation (``gone``). Every read JOINs
``conversation_keys``, so it gets the current wrapped key with its rows: a shredded
conversation reads as ``{"kind": "shredded"}`` bodies on every node at once, and a body
that fails its integrity check reads as ``{"kind": "undecryptable"}`` (logged) — a read
never fails because of one bad row. If the key provider itself fails, the read fails with
:class:`~bankhub.storage.keys.KeyUnavailable` (``unavailable``) rather than hand out
markers for messages that are fine.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import msgspec

from ..bodies import AesGcmBodyCodec, BodyCodec, BodyUnreadable
from ..crypto.keyring import DataKey, Keyring
from ..desk.system import SYSTEM_USER_ID
from ..ids import uuid7_str
from ..models import Membership, User
from ..policy import Decision
from ..protocol.frames import ConversationSync, DlpNotice, ErrorCode, Message, MessageBody, ShreddedBody, UndecryptableBody
from ..text import StoredDecoder
from .db import Conn, Database
from .keys import ConversationKeyStore, KeyRow
from .signing_keys import SigningKeyStore, SigningUnavailable

__all__ = ["NewMessage", "Appended", "MessageStore", "Locked", "Since"]

log = logging.getLogger("bankhub.storage.messages")

# stored bodies: what clients send, and the system bodies the hub itself posts
_body_decoder = StoredDecoder[MessageBody](MessageBody)  # rows may predate the text constraints
_COLS = "conversation_id, seq, id, sender_id, client_msg_id, body, body_key_id, created_at, edited_at"
# a read: the message columns and the conversation's current wrapped key (alias k)
_READ_COLS = ", ".join(f"m.{c.strip()}" for c in _COLS.split(",")) + ", k.kek_id, k.wrapped_dek, k.shredded_at"
_KeyMap = dict[tuple[str, bytes], DataKey]


class NewMessage(msgspec.Struct, gc=False):
    """A send waiting to be committed."""

    sender: User
    conversation_id: str
    client_msg_id: str
    kind: str
    body: bytes  # the body's JSON encoding


class Appended(msgspec.Struct, gc=False):
    """The outcome of one :class:`NewMessage`, in input order.

    ``status`` is ``"stored"``, ``"duplicate"`` (the client_msg_id was stored before;
    ``message`` is the original) or ``"denied"`` (``code`` says why; nothing stored).
    ``kind`` is the conversation's kind (for what reacts to committed messages).
    """

    status: str
    message: Message | None = None
    recipients: list[str] = []
    code: str | None = None
    reason: str = ""
    kind: str = ""
    # data-loss prevention: what was masked in the stored body (bankhub.actions.dlp), for the sender's ``sent``
    dlp: list[DlpNotice] = []


class Since(msgspec.Struct, gc=False):
    """The answer of :meth:`MessageStore.since`.

    ``conversations``: what the user missed. ``listed``: the ids the caller listed that are
    conversations of the user, each with the position the client declared — the only
    listed ids a caller may keep state for (the rest are client input about streams that
    are not the user's).
    """

    conversations: list[ConversationSync]
    listed: dict[str, int]


class Locked:
    """What :meth:`MessageStore.lock_txn` read under the conversations' row locks: the
    facts the policy decides each send on."""

    __slots__ = ("convs", "known_keys", "members", "blocked_convs", "now", "barriers")

    def __init__(self) -> None:
        self.convs: dict[str, tuple[str, int]] = {}  # id -> (kind, last_seq)
        self.known_keys: dict[str, KeyRow] = {}
        self.members: dict[str, dict[str, Any]] = {}  # id -> user id -> member row
        self.blocked_convs: set[str] = set()  # direct conversations whose members block one another
        # the database's clock at the lock: new messages are stamped with it, so every node
        # stamps by one clock (the recall/edit windows are measured against it, revisions.py)
        self.now: dt.datetime | None = None
        # whether any information barrier policy exists (read under the shared barrier lock the
        # transaction took first): without one no send can be barred, and the check is skipped
        self.barriers = False

    def blocked(self, send: NewMessage) -> bool:
        """Whether one member of the send's direct conversation blocks the other (either way)."""
        return send.conversation_id in self.blocked_convs

    def membership(self, send: NewMessage) -> Membership | None:
        """The sender's membership of the conversation (None: not a member, or no such
        conversation). The system user is a member of nothing: it gets a ``system``
        membership of any existing conversation, and the policy decides."""
        conv = self.convs.get(send.conversation_id)
        if conv is None:
            return None
        row = self.members.get(send.conversation_id, {}).get(send.sender.id)
        if row is not None:
            return Membership(send.conversation_id, conv[0], send.sender.id, row["role"], row["read_seq"], conv[1])
        if send.sender.id == SYSTEM_USER_ID:
            return Membership(send.conversation_id, conv[0], send.sender.id, "system", conv[1], conv[1])
        return None


def _ms(ts: dt.datetime) -> int:
    return int(ts.timestamp() * 1000)


class MessageStore:
    def __init__(self, db: Database, keyring: Keyring, codec: BodyCodec | None = None) -> None:
        self.db = db
        self.keyring = keyring
        self.keys = ConversationKeyStore(db)
        self.codec: BodyCodec = codec or AesGcmBodyCodec()
        # signs card bodies at commit (set by the hub; see bankhub.storage.signing_keys)
        self.signer: SigningKeyStore | None = None

    def _sign_card(self, n: NewMessage, message_id: str, ts: int) -> bytes:
        if self.signer is None:
            raise SigningUnavailable("no signing key store")
        return self.signer.sign_card_body(n.conversation_id, message_id, n.sender.id, ts, n.body)

    def _message(self, row: Any, key: DataKey | None, shredded: bool = False) -> Message:
        conv, mid, seq = str(row["conversation_id"]), str(row["id"]), row["seq"]
        body: MessageBody
        if shredded:
            body = ShreddedBody()
        else:
            try:
                if key is None:
                    raise BodyUnreadable("the conversation has no data key")
                body = _body_decoder.decode(self.codec.open(key, conv, mid, seq, row["body"], row["body_key_id"]))
            except (BodyUnreadable, msgspec.DecodeError) as exc:
                log.warning("message %s (conversation %s, seq %s) is undecryptable: %s", mid, conv, seq, exc)
                body = UndecryptableBody()
        return Message(
            conversation_id=conv,
            message_id=mid,
            seq=seq,
            sender_id=str(row["sender_id"]),
            client_msg_id=row["client_msg_id"],
            body=body,
            ts=_ms(row["created_at"]),
            edited_ts=_ms(row["edited_at"]) if row["edited_at"] is not None else None,
        )

    def message_from_row(self, row: Any, key: DataKey | None) -> Message:
        """A message row (the columns of a plain read) opened under its conversation's key
        (None: no key, the body reads as ``undecryptable``)."""
        return self._message(row, key)

    async def _read_keys(self, rows: Sequence[Any]) -> _KeyMap:
        """Unwrap (or take from the cache) the wrapped keys that came with ``rows``."""
        return await ConversationKeyStore.unwrap_rows(self.keyring, rows, present="seq")

    def _read_message(self, row: Any, keys: _KeyMap) -> Message:
        wrapped = row["wrapped_dek"]
        key = keys.get((row["kek_id"], wrapped)) if wrapped is not None else None
        return self._message(row, key, shredded=row["shredded_at"] is not None)

    async def lock_txn(self, conn: Conn, batch: Sequence[NewMessage]) -> Locked:
        """Step 1 of an append: lock the batch's conversations (in id order: no deadlocks
        between batches) and read their kinds, last seqs, keys and members — and, for a direct
        conversation, whether its members block one another (:meth:`Locked.blocked`) — in one
        round trip — with whether any information barrier policy exists (:attr:`Locked.barriers`;
        meaningful when the transaction holds the shared barrier lock)."""
        conv_ids = sorted({uuid.UUID(c) for c in {n.conversation_id for n in batch}})
        rows = await conn.fetch(
            """SELECT c.id, c.kind, c.last_seq, k.kek_id, k.wrapped_dek, k.shredded_at IS NOT NULL AS shredded,
                      m.user_id, m.role, m.read_seq, now() AS db_now,
                      EXISTS (SELECT 1 FROM barrier_policies) AS barriers,
                      -- each member's side, for data-loss prevention's per-direction verdict
                      u.role AS user_role, u.widget_visitor,
                      -- a direct conversation's members blocking one another (contact_blocks, either way)
                      c.kind = 'direct' AND EXISTS (
                          SELECT 1 FROM conversation_members o JOIN contact_blocks b
                            ON (b.user_id = m.user_id AND b.blocked_id = o.user_id)
                            OR (b.user_id = o.user_id AND b.blocked_id = m.user_id)
                          WHERE o.conversation_id = c.id AND o.user_id <> m.user_id) AS blocked
               FROM conversations c
               JOIN conversation_members m ON m.conversation_id = c.id
               JOIN users u ON u.id = m.user_id
               LEFT JOIN conversation_keys k ON k.conversation_id = c.id
               WHERE c.id = ANY($1::uuid[]) ORDER BY c.id FOR UPDATE OF c""",
            conv_ids,
        )
        locked = Locked()
        for r in rows:
            cid = str(r["id"])
            locked.now = r["db_now"]
            locked.barriers = r["barriers"]
            if cid not in locked.convs:
                locked.convs[cid] = (r["kind"], r["last_seq"])
                if r["kek_id"] is not None or r["shredded"]:
                    locked.known_keys[cid] = KeyRow(r["kek_id"], r["wrapped_dek"], r["shredded"])
            locked.members.setdefault(cid, {})[str(r["user_id"])] = r
            if r["blocked"]:
                locked.blocked_convs.add(cid)
        return locked

    async def append_txn(self, conn: Conn, batch: Sequence[NewMessage], locked: Locked, decisions: Sequence[Decision]) -> list[Appended]:
        """Steps 2–4 of an append, for the sends the policy allowed (``decisions``, one per
        send, made on :meth:`Locked.membership` facts): the data keys, the idempotent resends,
        then the new rows. Returns one :class:`Appended` per send, in order."""
        results: list[Appended | None] = [None] * len(batch)
        allowed: list[int] = []
        for i, decision in enumerate(decisions):
            if decision.allowed:
                allowed.append(i)
            else:
                results[i] = Appended(status="denied", code=decision.code, reason=decision.reason)
        deks: dict[str, DataKey] = {}
        if allowed:
            deks, allowed = await self._keys_txn(conn, batch, locked, allowed, results)
        stored: dict[tuple[str, str, str], Message] = {}
        for _ in range(2):
            if not allowed:
                break
            # the write checks for resends itself (one round trip in the common case); when it
            # finds some it writes nothing and returns them, and the batch is written again
            # with those answered by their originals (the row locks keep them current)
            resent = await self._insert_txn(conn, batch, locked, allowed, deks, dict(stored), results)
            if not resent:
                break
            for r in resent:
                m = self._message(r, deks.get(str(r["conversation_id"])))
                stored[(m.conversation_id, m.sender_id, m.client_msg_id)] = m
        else:
            raise RuntimeError("append: resends found after they were answered")  # the row locks make this impossible
        return [r for r in results if r is not None]

    async def _keys_txn(
        self, conn: Conn, batch: Sequence[NewMessage], locked: Locked, allowed: list[int], results: list[Appended | None]
    ) -> tuple[dict[str, DataKey], list[int]]:
        """The data keys of the allowed sends' conversations (created on a first message);
        sends into a shredded conversation, or whose key cannot be had, are refused."""
        deks, shredded, failed = await ConversationKeyStore.data_keys(
            conn, self.keyring, sorted({batch[i].conversation_id for i in allowed}), locked.known_keys
        )
        still_allowed = []
        for i in allowed:
            cid = batch[i].conversation_id
            if cid in shredded:
                results[i] = Appended(
                    status="denied", code=ErrorCode.GONE, reason="this conversation was erased; it accepts no new messages"
                )
            elif cid in failed:
                results[i] = Appended(
                    status="denied", code=ErrorCode.UNAVAILABLE, reason="conversation key unavailable; nothing was stored, retry"
                )
            else:
                still_allowed.append(i)
        return deks, still_allowed

    async def _insert_txn(
        self,
        conn: Conn,
        batch: Sequence[NewMessage],
        locked: Locked,
        allowed: list[int],
        deks: Mapping[str, DataKey],
        stored: dict[tuple[str, str, str], Message],
        results: list[Appended | None],
    ) -> list[Any]:
        """Allocate consecutive seqs after ``last_seq``, seal and insert the new messages,
        write ``last_seq`` back and raise each sender's read position to its own message —
        unless a message is already stored under one of their ``client_msg_id``s (an
        idempotent resend): then nothing is written and those stored rows are returned (the
        caller answers them with the originals, ``stored``, and writes the rest again).

        An allowed send's conversation id is the canonical one (its membership was found by
        it) and a sender's id comes from the database: both go to Postgres as they are."""
        convs, members = locked.convs, locked.members
        now = locked.now or dt.datetime.now(dt.timezone.utc)
        ts = _ms(now)
        next_seq = {cid: kind_last[1] for cid, kind_last in convs.items()}
        conv_col: list[str] = []
        seq_col: list[int] = []
        id_col: list[str] = []
        sender_col: list[str] = []
        cmid_col: list[str] = []
        kind_col: list[str] = []
        body_col: list[bytes] = []
        key_col: list[str] = []
        seal = self.codec.seal
        for i in allowed:
            n = batch[i]
            cid, sender_id = n.conversation_id, n.sender.id
            key = (cid, sender_id, n.client_msg_id)
            recipients = list(members[cid])
            if key in stored:
                # stored by an earlier batch, or earlier in this one: answer with the original
                results[i] = Appended(status="duplicate", message=stored[key], recipients=recipients, kind=convs[cid][0])
                continue
            seq = next_seq[cid] + 1
            next_seq[cid] = seq
            mid = uuid7_str()
            # a card gets the hub's signature, binding it to its conversation, id, sender and time
            body = self._sign_card(n, mid, ts) if n.kind == "card" else n.body
            body_stored, key_id = seal(deks[cid], cid, mid, seq, body)
            message = Message(
                conversation_id=cid,
                message_id=mid,
                seq=seq,
                sender_id=sender_id,
                client_msg_id=n.client_msg_id,
                body=_body_decoder.decode(body),
                ts=ts,
            )
            stored[key] = message
            conv_col.append(cid)
            seq_col.append(seq)
            id_col.append(mid)
            sender_col.append(sender_id)
            cmid_col.append(n.client_msg_id)
            kind_col.append(n.kind)
            body_col.append(body_stored)
            key_col.append(key_id)
            results[i] = Appended(status="stored", message=message, recipients=recipients, kind=convs[cid][0])
        if not conv_col:
            return []
        bumped = [(c, s) for c, s in next_seq.items() if s != convs[c][1]]
        # one round trip for the resend check and the three writes, guarded by it. The check is
        # a join from the keys, so that even a plan cached while the table was empty probes the
        # unique index instead of scanning the table. Sending implies having read up to one's
        # own message; grouped first, because UPDATE ... FROM applies only one of several
        # matching source rows (two messages of one sender in a batch must not lower it)
        return await conn.fetch(
            f"""WITH resent AS MATERIALIZED (
                   SELECT {", ".join("x." + c.strip() for c in _COLS.split(","))}
                   FROM unnest($3::uuid[], $6::uuid[], $7::text[]) AS k(conversation_id, sender_id, client_msg_id)
                   JOIN messages x ON x.conversation_id = k.conversation_id AND x.sender_id = k.sender_id
                                  AND x.client_msg_id = k.client_msg_id
               ), go AS (SELECT NOT EXISTS (SELECT 1 FROM resent) AS ok
               ), bump AS (
                   UPDATE conversations c SET last_seq = v.last_seq
                   FROM unnest($1::uuid[], $2::bigint[]) AS v(id, last_seq), go WHERE c.id = v.id AND go.ok
               ), ins AS (
                   INSERT INTO messages (conversation_id, seq, id, sender_id, client_msg_id, kind, body, body_key_id, created_at)
                   SELECT v.*, $11::timestamptz
                   FROM unnest($3::uuid[], $4::bigint[], $5::uuid[], $6::uuid[], $7::text[], $8::text[], $9::bytea[], $10::text[]) AS v,
                        go
                   WHERE go.ok
               ), mark AS (
                   UPDATE conversation_members m SET read_seq = GREATEST(m.read_seq, v.seq)
                   FROM (SELECT c, u, max(s) AS seq FROM unnest($3::uuid[], $6::uuid[], $4::bigint[]) AS t(c, u, s)
                         GROUP BY c, u) AS v, go
                   WHERE m.conversation_id = v.c AND m.user_id = v.u AND go.ok
               )
               SELECT * FROM resent""",
            [b[0] for b in bumped],
            [b[1] for b in bumped],
            conv_col,
            seq_col,
            id_col,
            sender_col,
            cmid_col,
            kind_col,
            body_col,
            key_col,
            now,
        )

    async def history(self, conversation_id: str, before_seq: int | None, limit: int) -> list[Message]:
        """Up to ``limit`` messages before ``before_seq`` (newest first); None reads from the end."""
        async with self.db.connection("message_history") as conn:
            rows = await conn.fetch(
                f"""SELECT {_READ_COLS} FROM messages m
                    LEFT JOIN conversation_keys k ON k.conversation_id = m.conversation_id
                    WHERE m.conversation_id = $1 AND m.seq < $2
                    ORDER BY m.seq DESC LIMIT $3""",
                uuid.UUID(conversation_id),
                before_seq if before_seq is not None else 2**62,
                limit,
            )
        keys = await self._read_keys(rows)
        return [self._read_message(r, keys) for r in rows]

    async def latest(self, conversation_ids: Sequence[str]) -> dict[str, Message]:
        """The last message of each of ``conversation_ids`` that has any, in one query."""
        async with self.db.connection("message_latest") as conn:
            rows = await conn.fetch(
                f"""SELECT {_READ_COLS} FROM conversations c
                    JOIN messages m ON m.conversation_id = c.id AND m.seq = c.last_seq
                    LEFT JOIN conversation_keys k ON k.conversation_id = m.conversation_id
                    WHERE c.id = ANY($1::uuid[])""",
                [uuid.UUID(c) for c in conversation_ids],
            )
        keys = await self._read_keys(rows)
        return {str(r["conversation_id"]): self._read_message(r, keys) for r in rows}

    async def range(self, conversation_id: str, after_seq: int, upto_seq: int) -> list[Message]:
        """Messages with ``after_seq < seq <= upto_seq`` in seq order (gap filling)."""
        async with self.db.connection("message_range") as conn:
            rows = await conn.fetch(
                f"""SELECT {_READ_COLS} FROM messages m
                    LEFT JOIN conversation_keys k ON k.conversation_id = m.conversation_id
                    WHERE m.conversation_id = $1 AND m.seq > $2 AND m.seq <= $3 ORDER BY m.seq""",
                uuid.UUID(conversation_id),
                after_seq,
                upto_seq,
            )
        keys = await self._read_keys(rows)
        return [self._read_message(r, keys) for r in rows]

    async def since(
        self, user_id: str, cursors: Mapping[str, int], limit: int, *, listed_only: bool = False
    ) -> Since:
        """What ``user_id`` missed, in one query: per conversation, up to ``limit`` messages after its cursor.

        Conversations the client listed with nothing new are omitted from
        ``conversations``; those it did not list are included (so it learns about them),
        read from seq 1 — unless ``listed_only``, which answers the listed conversations
        only. ``listed`` holds every listed id that is one of the user's conversations
        (canonical form), answered or quiet, with the position the client declared (never
        past ``last_seq``); listed ids that are not the user's are not in it.
        """
        valid = {}
        for cid, seq in cursors.items():
            try:
                valid[uuid.UUID(cid)] = seq
            except ValueError:
                continue
        async with self.db.connection("sync_since", acquire_timeout=5.0) as conn:
            rows = await conn.fetch(
                f"""SELECT c.id AS cid, c.last_seq, m.read_seq, s.cursor, x.*, k.kek_id, k.wrapped_dek, k.shredded_at
                    FROM conversation_members m
                    JOIN conversations c ON c.id = m.conversation_id
                    LEFT JOIN conversation_keys k ON k.conversation_id = c.id
                    LEFT JOIN unnest($2::uuid[], $3::bigint[]) AS s(cid, cursor) ON s.cid = c.id
                    LEFT JOIN LATERAL (
                        SELECT {_COLS} FROM messages y
                        WHERE y.conversation_id = c.id AND y.seq > COALESCE(s.cursor, 0)
                        ORDER BY y.seq LIMIT $4) AS x ON true
                    WHERE m.user_id = $1 AND (NOT $5::boolean OR s.cursor IS NOT NULL)
                    ORDER BY c.id, x.seq""",
                uuid.UUID(user_id),
                list(valid.keys()),
                list(valid.values()),
                limit,
                listed_only,
            )
        keys = await self._read_keys(rows)
        out: dict[str, ConversationSync] = {}
        listed: dict[str, int] = {}
        for r in rows:
            cid = str(r["cid"])
            if r["cursor"] is not None:
                listed[cid] = min(r["cursor"], r["last_seq"])
                if r["last_seq"] <= r["cursor"]:
                    continue  # listed, nothing new: the membership is all the answer needs
            entry = out.get(cid)
            if entry is None:
                entry = out[cid] = ConversationSync(
                    conversation_id=cid,
                    last_seq=r["last_seq"],
                    read_seq=r["read_seq"],
                    unread=r["last_seq"] - r["read_seq"],
                    messages=[],
                    has_more=False,
                )
            if r["seq"] is not None:
                entry.messages.append(self._read_message(r, keys))
        for entry in out.values():
            held = entry.messages[-1].seq if entry.messages else listed.get(entry.conversation_id, 0)
            entry.has_more = held < entry.last_seq
        return Since(conversations=list(out.values()), listed=listed)
