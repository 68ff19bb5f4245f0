"""Storage for recall and edit: ``message_revisions`` and the target row's update.

A recall or edit is a message of its own (body kind ``recall``/``edit``) appended to the
conversation's seq stream by :meth:`MessageStore.append_txn`, in a transaction that holds
the conversation's row lock (:meth:`MessageStore.lock_txn`), as the group committer's do:
seqs stay gap-free, and a change commits together with its message or not at all. Its
steps here, in that same transaction (:mod:`bankhub.actions.revise`):

1. :meth:`RevisionStore.target_txn` reads the target row, its body opened under the
   conversation's key, and the facts the policy decides on (:class:`RevisionTarget`);
2. :meth:`RevisionStore.apply_txn` keeps the body being replaced in ``message_revisions``,
   writes the target's new body (the new text, or the ``recalled`` marker) with
   ``edited_at``/``recalled_at``, and rewrites the target's earlier ``edit`` messages to
   carry its *current* body — an old edit message never shows a text its sender replaced
   or withdrew, and applying a target's edit messages in any order gives the same result.

Kept bodies are sealed under the conversation's data key (AES-256-GCM) with associated
data binding them to their row — conversation, message, revision number, time and kind
of change (:func:`revision_associated_data`) — so a kept body moved to another row, or
relabelled, fails authentication. Crypto-shredding the conversation destroys the key: its
kept bodies read as ``shredded``. They are read by :meth:`RevisionStore.for_compliance`,
for the reason-coded, audited compliance path only.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import uuid
from collections.abc import Sequence
from typing import Any

import msgspec
from cryptography.exceptions import InvalidTag

from ..bodies import BodyCodec, BodyUnreadable
from ..crypto.keyring import DataKey, Keyring
from ..models import MessageRevision, RevisionTarget
from ..protocol.frames import EditBody, Message, MessageBody, RecalledBody, ShreddedBody, TextBody, UndecryptableBody
from ..text import StoredDecoder
from .db import Conn
from .keys import ConversationKeyStore, DataKeys, KeyRow
from .messages import MessageStore

__all__ = ["RevisionStore", "TargetRow", "REVISION_KEY_ID", "revision_associated_data", "RECALLED_BODY"]

log = logging.getLogger("bankhub.storage.revisions")

REVISION_KEY_ID = "crev1"
"""``message_revisions.body_key_id``: AES-256-GCM under the conversation's DEK with
:func:`revision_associated_data`."""

RECALLED_BODY = msgspec.json.encode(RecalledBody())
"""What a recalled message's row holds from then on."""

_AD_PREFIX = b"bankhub/revision/v1\x00"
_NONCE = 12
_KINDS = {"edit": 1, "recall": 2}
_body_decoder = StoredDecoder[MessageBody](MessageBody)
_edit_target = msgspec.json.Decoder(TextBody | RecalledBody)
_encoder = msgspec.json.Encoder()


def revision_associated_data(conversation_id: str, message_id: str, revision: int, changed_at_ms: int, kind: str) -> bytes:
    """Fixed-width encoding of the revision row a kept body belongs to."""
    return (
        _AD_PREFIX
        + uuid.UUID(conversation_id).bytes
        + uuid.UUID(message_id).bytes
        + revision.to_bytes(4, "big")
        + changed_at_ms.to_bytes(8, "big", signed=True)
        + bytes([_KINDS[kind]])
    )


def _ms(ts: dt.datetime) -> int:
    return int(ts.timestamp() * 1000)


class TargetRow(msgspec.Struct, gc=False):
    """A target message as :meth:`RevisionStore.target_txn` read it under the lock.

    ``current``: its body's JSON (None when it cannot be opened). ``recall_seq``: the seq of
    the message that recalled it, if it was recalled. ``elapsed_seconds``: how long ago it
    was committed, by the database's clock — the clock that stamped ``created_at`` — so a
    node's clock drift neither stretches nor shrinks the recall/edit window."""

    facts: RevisionTarget
    current: bytes | None
    recall_seq: int | None
    elapsed_seconds: float


class RevisionStore:
    def __init__(self, messages: MessageStore, keyring: Keyring) -> None:
        self.messages = messages
        self.keyring = keyring

    @property
    def codec(self) -> BodyCodec:
        return self.messages.codec

    async def data_key_txn(self, conn: Conn, conversation_id: str, known: dict[str, KeyRow]) -> DataKeys:
        """The conversation's data key (``known``: the key row read with the row lock)."""
        return await ConversationKeyStore.data_keys(conn, self.keyring, [conversation_id], known)

    async def resent_txn(self, conn: Conn, key: DataKey, conversation_id: str, sender_id: str, client_msg_id: str) -> Message | None:
        """The message ``sender_id`` stored under ``client_msg_id`` before (idempotent resend)."""
        row = await conn.fetchrow(
            """SELECT conversation_id, seq, id, sender_id, client_msg_id, body, body_key_id, created_at, edited_at
               FROM messages WHERE conversation_id = $1 AND sender_id = $2 AND client_msg_id = $3""",
            uuid.UUID(conversation_id),
            uuid.UUID(sender_id),
            client_msg_id,
        )
        return self.messages.message_from_row(row, key) if row is not None else None

    async def message_at_txn(self, conn: Conn, key: DataKey, conversation_id: str, seq: int) -> Message | None:
        row = await conn.fetchrow(
            """SELECT conversation_id, seq, id, sender_id, client_msg_id, body, body_key_id, created_at, edited_at
               FROM messages WHERE conversation_id = $1 AND seq = $2""",
            uuid.UUID(conversation_id),
            seq,
        )
        return self.messages.message_from_row(row, key) if row is not None else None

    async def target_txn(self, conn: Conn, key: DataKey, conversation_id: str, message_id: str) -> TargetRow | None:
        """Message ``message_id`` of ``conversation_id`` (None: no such message there), locked."""
        row = await conn.fetchrow(
            """SELECT m.conversation_id, m.seq, m.id, m.sender_id, m.kind, m.body, m.body_key_id, m.created_at,
                      m.recalled_at,
                      -- the wall clock now (not the transaction's start: a wait for the lock counts)
                      EXTRACT(EPOCH FROM clock_timestamp() - m.created_at)::float8 AS elapsed,
                      (SELECT count(*) FROM message_revisions r
                         WHERE r.conversation_id = m.conversation_id AND r.message_id = m.id AND r.kind = 'edit') AS edits,
                      (SELECT r.change_seq FROM message_revisions r
                         WHERE r.conversation_id = m.conversation_id AND r.message_id = m.id AND r.kind = 'recall') AS recall_seq
               FROM messages m WHERE m.conversation_id = $1 AND m.id = $2 FOR UPDATE OF m""",
            uuid.UUID(conversation_id),
            uuid.UUID(message_id),
        )
        if row is None:
            return None
        cid, mid = str(row["conversation_id"]), str(row["id"])
        current: bytes | None
        try:
            current = self.codec.open(key, cid, mid, row["seq"], row["body"], row["body_key_id"])
        except BodyUnreadable:
            log.warning("message %s (conversation %s) is undecryptable: it cannot be changed", mid, cid)
            current = None
        facts = RevisionTarget(
            conversation_id=cid,
            message_id=mid,
            seq=row["seq"],
            sender_id=str(row["sender_id"]),
            kind=row["kind"],
            created_at=row["created_at"],
            edits=row["edits"],
            recalled=row["recalled_at"] is not None,
            readable=current is not None,
        )
        return TargetRow(facts=facts, current=current, recall_seq=row["recall_seq"], elapsed_seconds=row["elapsed"])

    async def apply_txn(
        self, conn: Conn, key: DataKey, target: TargetRow, change: str, change_seq: int, new_body: bytes | None, now: dt.datetime
    ) -> None:
        """Record change ``change`` (``edit`` with ``new_body``, the new text body's JSON, or
        ``recall``) made by the message at ``change_seq``: keep the replaced body, write the
        target's new body, rewrite its earlier edit messages. Call only for an allowed change
        of a readable target (:meth:`target_txn`)."""
        facts = target.facts
        assert target.current is not None, "the policy refuses unreadable targets"
        cid, mid = facts.conversation_id, facts.message_id
        current = new_body if change == "edit" and new_body is not None else RECALLED_BODY
        revision = await conn.fetchval(
            "SELECT COALESCE(max(revision), 0) + 1 FROM message_revisions WHERE conversation_id = $1 AND message_id = $2",
            uuid.UUID(cid),
            uuid.UUID(mid),
        )
        nonce = os.urandom(_NONCE)
        kept = nonce + key.aead.encrypt(nonce, target.current, revision_associated_data(cid, mid, revision, _ms(now), change))
        body, key_id = self.codec.seal(key, cid, mid, facts.seq, current)
        # the target's earlier edit messages now carry its current body
        earlier = await conn.fetch(
            """SELECT m.id, m.seq FROM message_revisions r
               JOIN messages m ON m.conversation_id = r.conversation_id AND m.seq = r.change_seq
               WHERE r.conversation_id = $1 AND r.message_id = $2 AND r.kind = 'edit'""",
            uuid.UUID(cid),
            uuid.UUID(mid),
        )
        wrapped = _edit_target.decode(current)
        rewritten = [
            (r["id"], self.codec.seal(key, cid, str(r["id"]), r["seq"], _encoder.encode(EditBody(message_id=mid, body=wrapped)))[0])
            for r in earlier
        ]
        await conn.execute(
            """WITH rev AS (
                   INSERT INTO message_revisions (conversation_id, message_id, revision, kind, change_seq, body, body_key_id,
                                                  changed_at)
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
               ), target AS (
                   UPDATE messages SET body = $9, body_key_id = $10,
                          kind = CASE WHEN $4 = 'recall' THEN 'recalled' ELSE kind END,
                          edited_at = CASE WHEN $4 = 'edit' THEN $8 ELSE edited_at END,
                          recalled_at = CASE WHEN $4 = 'recall' THEN $8 ELSE recalled_at END
                   WHERE conversation_id = $1 AND id = $2
               )
               UPDATE messages m SET body = v.body FROM unnest($11::uuid[], $12::bytea[]) AS v(id, body)
               WHERE m.id = v.id AND m.conversation_id = $1""",
            uuid.UUID(cid),
            uuid.UUID(mid),
            revision,
            change,
            change_seq,
            kept,
            REVISION_KEY_ID,
            now,
            body,
            key_id,
            [r[0] for r in rewritten],
            [r[1] for r in rewritten],
        )

    async def for_compliance(self, conversation_id: str, message_ids: Sequence[str]) -> list[MessageRevision]:
        """The kept bodies of ``message_ids`` (messages of ``conversation_id``), by message and
        revision. For the audited compliance path only: never call it for anything else."""
        if not message_ids:
            return []
        async with self.messages.db.connection("message_revisions_compliance") as conn:
            rows = await conn.fetch(
                """SELECT r.conversation_id, r.message_id, r.revision, r.kind, r.change_seq, r.body, r.body_key_id,
                          r.changed_at, k.kek_id, k.wrapped_dek, k.shredded_at
                   FROM message_revisions r
                   LEFT JOIN conversation_keys k ON k.conversation_id = r.conversation_id
                   WHERE r.conversation_id = $1 AND r.message_id = ANY($2::uuid[])
                   ORDER BY r.change_seq""",
                uuid.UUID(conversation_id),
                [uuid.UUID(m) for m in message_ids],
            )
        keys = await ConversationKeyStore.unwrap_rows(self.keyring, rows, present="revision")
        return [self._revision(r, keys) for r in rows]

    def _revision(self, row: Any, keys: dict[tuple[str, bytes], DataKey]) -> MessageRevision:
        cid, mid, ts = str(row["conversation_id"]), str(row["message_id"]), _ms(row["changed_at"])
        body: MessageBody
        if row["shredded_at"] is not None:
            body = ShreddedBody()
        else:
            key = keys.get((row["kek_id"], row["wrapped_dek"])) if row["wrapped_dek"] is not None else None
            try:
                stored = row["body"]
                if key is None or row["body_key_id"] != REVISION_KEY_ID or len(stored) < _NONCE + 16:
                    raise BodyUnreadable("not a sealed revision")
                ad = revision_associated_data(cid, mid, row["revision"], ts, row["kind"])
                body = _body_decoder.decode(key.aead.decrypt(stored[:_NONCE], stored[_NONCE:], ad))
            except (BodyUnreadable, InvalidTag, msgspec.DecodeError):
                log.warning("revision %s of message %s (conversation %s) is undecryptable", row["revision"], mid, cid)
                body = UndecryptableBody()
        return MessageRevision(
            message_id=mid, revision=row["revision"], kind=row["kind"], change_seq=row["change_seq"], ts=ts, body=body
        )
