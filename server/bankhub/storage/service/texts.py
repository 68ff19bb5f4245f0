"""The desk's free texts: notes on sessions and the customers' CSAT (``service_notes``,
the ``csat*`` columns of ``service_sessions``).

Texts are sealed under their conversation's data key (:meth:`ServiceTexts.text_key`)
and bound to their row (:mod:`bankhub.desk.sealing`); reads open them, or say why they
cannot (:class:`~.rows.DeskText`).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from typing import Any

from ...crypto.keyring import DataKey, Keyring
from ...desk.sealing import CSAT_COMMENT, DESK_TEXT_KEY_ID, NOTE_TEXT, SHREDDED, UNDECRYPTABLE, TextUnreadable, open_text, seal_text
from ...protocol.frames import ServiceNote
from ..db import Conn
from ..keys import ConversationKeyStore, KeyUnavailable
from .rows import SESSION_COLS, DeskText, ServiceError, SessionRow, session_from_row, sid, uid
from .sessions import ServiceSessions

__all__ = ["ServiceTexts"]

log = logging.getLogger(__name__)

_UNRATABLE = "only a session an agent closed can be rated, and only once"


class ServiceTexts(ServiceSessions):
    """Notes and CSAT: writing them sealed, reading them opened."""

    # --- sealed texts: the conversation's data key --------------------------------------------

    def _keyring(self) -> Keyring:
        if self.keyring is None:
            raise RuntimeError("this ServiceStore has no keyring: it cannot seal or open desk texts")
        return self.keyring

    async def text_key(self, conversation_id: str) -> DataKey | None:
        """The data key this conversation's desk texts are sealed under; None if the
        conversation was shredded. A conversation without a key yet gets one here, as with
        its first message (INSERT ... ON CONFLICT DO NOTHING, then read back: a key stored
        meanwhile wins). Raises :class:`KeyUnavailable` when the key provider fails.

        Read outside the desk's transactions (an HSM call never runs under their locks): a
        shred committed after this read leaves the text sealed under the destroyed key,
        unrecoverable like every message of the conversation — never readable.
        """
        keyring = self._keyring()
        cid = str(uid(conversation_id))
        async with self.db.connection("service_text_key") as conn:  # autocommit: no lock is held
            found = await ConversationKeyStore.data_keys(conn, keyring, [cid])
        if cid in found.failed:
            raise KeyUnavailable("the conversation's data key is unavailable")
        return found.keys.get(cid)  # None: shredded

    async def _sealing_key(self, conversation_id: str) -> DataKey:
        """:meth:`text_key`, refusing (``gone``) a conversation that was shredded."""
        key = await self.text_key(conversation_id)
        if key is None:
            raise ServiceError("gone", "this conversation was erased: no text can be stored with it any more")
        return key

    async def _read_keys(self, rows: Sequence[Any], sealed_column: str) -> dict[tuple[str, bytes], DataKey]:
        """The unwrapped keys of the rows that hold a sealed text (``unavailable`` if the provider fails)."""
        return await ConversationKeyStore.unwrap_rows(self._keyring(), rows, present=sealed_column)

    @staticmethod
    def _open(
        r: Any, keys: dict[tuple[str, bytes], DataKey], field: str, row_id: str, prefix: str, *, always: bool
    ) -> DeskText:
        """Read column ``prefix`` of row ``r`` (with ``<prefix>_sealed``, ``<prefix>_key_id``
        and the conversation's key columns). ``always``: the row always had a text (a note),
        so one with none left was cleared by a shred."""
        conv = str(r["conversation_id"])
        sealed, plain = r[f"{prefix}_sealed"], r[prefix]
        if r["shredded_at"] is not None:
            return DeskText(unreadable=SHREDDED) if (always or sealed is not None or plain is not None) else DeskText()
        if sealed is None:
            # written before texts were sealed (delta 0010); sealed by the next start-up
            return DeskText(text=plain) if (plain is not None or not always) else DeskText(unreadable=UNDECRYPTABLE)
        wrapped = r["wrapped_dek"]
        key = keys.get((r["kek_id"], wrapped)) if wrapped is not None else None
        try:
            if key is None:
                raise TextUnreadable("the conversation has no data key")
            return DeskText(text=open_text(key, field, conv, row_id, sealed, r[f"{prefix}_key_id"]))
        except TextUnreadable as exc:
            log.warning("%s of row %s (conversation %s) is undecryptable: %s", field, row_id, conv, exc)
            return DeskText(unreadable=UNDECRYPTABLE)

    # --- notes ---------------------------------------------------------------------------------

    @staticmethod
    async def _note(
        conn: Conn,
        key: DataKey,
        session: SessionRow,
        author_id: str,
        kind: str,
        text: str,
        to_queue: str | None = None,
        to_agent: str | None = None,
    ) -> None:
        """Store a note in the caller's transaction, its text sealed under the conversation's
        key (``key``) and bound to its row."""
        note_id = uuid.uuid4()
        await conn.execute(
            """INSERT INTO service_notes (id, session_id, author_id, kind, text_sealed, text_key_id, to_queue, to_agent)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8)""",
            note_id,
            uid(session.id),
            uid(author_id),
            kind,
            seal_text(key, NOTE_TEXT, session.conversation_id, str(note_id), text),
            DESK_TEXT_KEY_ID,
            to_queue,
            None if to_agent is None else uid(to_agent),
        )

    async def notes(self, session_id: str) -> list[ServiceNote]:
        """The session's notes, oldest first, their texts opened. In a shredded conversation
        a note keeps its place (author, kind, time, target) with an empty ``text`` and
        ``unreadable: "shredded"``; one that fails its integrity check, ``"undecryptable"``."""
        async with self.db.connection("service_notes") as conn:
            # the conversation's current wrapped key with the rows, as message reads do
            rows = await conn.fetch(
                """SELECT n.id, n.author_id, n.kind, n.text, n.text_sealed, n.text_key_id, n.to_queue, n.to_agent, n.created_at,
                          s.conversation_id, k.kek_id, k.wrapped_dek, k.shredded_at
                   FROM service_notes n
                   JOIN service_sessions s ON s.id = n.session_id
                   LEFT JOIN conversation_keys k ON k.conversation_id = s.conversation_id
                   WHERE n.session_id = $1 ORDER BY n.created_at, n.id""",
                uid(session_id),
            )
        keys = await self._read_keys(rows, "text_sealed")
        out = []
        for r in rows:
            opened = self._open(r, keys, NOTE_TEXT, str(r["id"]), "text", always=True)
            out.append(
                ServiceNote(
                    author_id=str(r["author_id"]),
                    kind=r["kind"],
                    text=opened.text or "",
                    ts=int(r["created_at"].timestamp() * 1000),
                    to_queue=r["to_queue"],
                    to_agent_id=sid(r["to_agent"]),
                    unreadable=opened.unreadable,
                )
            )
        return out

    # --- CSAT ----------------------------------------------------------------------------------

    async def rate(self, session_id: str, customer_id: str, score: int, comment: str | None) -> SessionRow:
        """The customer's CSAT (1-5), once, after an agent closed the session. The comment
        is sealed under the conversation's key, bound to this session's row; a comment on a
        shredded conversation is refused (``gone``), a score alone is still taken."""
        sealed: bytes | None = None
        if comment:
            current = await self.session(session_id)
            if current is None or current.customer_id != customer_id:
                raise ServiceError("conflict", _UNRATABLE)
            key = await self._sealing_key(current.conversation_id)
            sealed = seal_text(key, CSAT_COMMENT, current.conversation_id, current.id, comment)
        async with self.db.connection("service_rate") as conn:
            row = await conn.fetchrow(
                f"""UPDATE service_sessions SET csat = $3, csat_comment_sealed = $4, csat_comment_key_id = $5, csat_at = now()
                    WHERE id = $1 AND customer_id = $2 AND state = 'closed' AND csat IS NULL
                      AND agent_id IS NOT NULL AND closed_by IS DISTINCT FROM customer_id
                    RETURNING {SESSION_COLS}""",
                uid(session_id),
                uid(customer_id),
                score,
                sealed,
                None if sealed is None else DESK_TEXT_KEY_ID,
            )
        if row is None:
            raise ServiceError("conflict", _UNRATABLE)
        return session_from_row(row)

    async def csat_comment(self, session_id: str) -> DeskText:
        """The customer's CSAT comment on the session, opened (see :class:`DeskText`)."""
        async with self.db.connection("service_csat_comment") as conn:
            rows = await conn.fetch(
                """SELECT s.id, s.conversation_id, s.csat_comment, s.csat_comment_sealed, s.csat_comment_key_id,
                          k.kek_id, k.wrapped_dek, k.shredded_at
                   FROM service_sessions s LEFT JOIN conversation_keys k ON k.conversation_id = s.conversation_id
                   WHERE s.id = $1""",
                uid(session_id),
            )
        if not rows:
            return DeskText()
        keys = await self._read_keys(rows, "csat_comment_sealed")
        return self._open(rows[0], keys, CSAT_COMMENT, str(rows[0]["id"]), "csat_comment", always=False)

    # --- texts stored before they were sealed (delta 0010) ------------------------------

    async def seal_legacy_text(self, batch: int = 200) -> int:
        """Seal the notes and CSAT comments still stored in plaintext and clear the plaintext;
        returns how many were sealed or, in a shredded conversation, cleared.

        Run by every node when it starts (the delta cannot: sealing needs the KEK). Walks
        the rows in id order, ``batch`` per transaction; each update is conditional on the
        plaintext still being there, so nodes running it at once do each row once. Raises
        :class:`KeyUnavailable` (nothing more done) if the key provider fails: run it again.
        """
        done = 0
        for table, field, prefix, sql in (
            (
                "service_notes",
                NOTE_TEXT,
                "text",
                """SELECT n.id, n.text AS plain, s.conversation_id FROM service_notes n
                   JOIN service_sessions s ON s.id = n.session_id
                   WHERE n.text IS NOT NULL AND n.id > $1 ORDER BY n.id LIMIT $2""",
            ),
            (
                "service_sessions",
                CSAT_COMMENT,
                "csat_comment",
                """SELECT id, csat_comment AS plain, conversation_id FROM service_sessions
                   WHERE csat_comment IS NOT NULL AND id > $1 ORDER BY id LIMIT $2""",
            ),
        ):
            after = uuid.UUID(int=0)
            while True:
                async with self.db.connection("service_legacy_text") as conn:
                    rows = await conn.fetch(sql, after, batch)
                if not rows:
                    break
                keys: dict[str, DataKey | None] = {}
                ids, sealed = [], []
                for r in rows:
                    conv = str(r["conversation_id"])
                    if conv not in keys:
                        keys[conv] = await self.text_key(conv)
                    key = keys[conv]
                    ids.append(r["id"])
                    # a shredded conversation: the plaintext is cleared, nothing is sealed
                    sealed.append(None if key is None else seal_text(key, field, conv, str(r["id"]), r["plain"]))
                async with self.db.transaction("service_seal_legacy_text") as conn:
                    status = await conn.execute(
                        f"""UPDATE {table} t SET {prefix} = NULL, {prefix}_sealed = v.sealed,
                                   {prefix}_key_id = CASE WHEN v.sealed IS NULL THEN NULL ELSE $3 END
                            FROM unnest($1::uuid[], $2::bytea[]) AS v(id, sealed)
                            WHERE t.id = v.id AND t.{prefix} IS NOT NULL""",
                        ids,
                        sealed,
                        DESK_TEXT_KEY_ID,
                    )
                done += int(status.rsplit(" ", 1)[-1])
                after = rows[-1]["id"]
        return done
