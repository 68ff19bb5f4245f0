"""Delta 0027: messages and message_revisions hash-partitioned by conversation_id.

The upgrade runs on a database the hub has written to at 0026 (texts, an edit, a masked card
number, a picture, a sampled message, the hub running as its own role): every row is still
there afterwards, the hub's privileges carry over, and the queries the hub itself sends for
history, sync and the retention purge touch one partition for one conversation, through an
index.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from bankhub.actions import messages as message_actions
from bankhub.demo import seed_demo
from bankhub.storage.db import Conn, Database
from bankhub.storage.migrate import default_schema_dir, migrate
from bankhub.storage.roles import AppRoleError, grant_app_role

from ..conftest import Nodes, login, open_direct
from ..support.postgres import PostgresForTests
from ..support.wsclient import RawClient
from .test_audit import dsn_as
from .test_dlp import CARD
from .test_retention import FLOOR, PURGES, _backdate, _client, _edit, _fetchval, _ids, _image, _policy, _texts, _wait_done

PARTITIONED = ("messages", "message_revisions")
# what the upgrade must keep, row for row (message_media gains conversation_id, compared apart)
SNAPSHOTS = {
    "messages": "SELECT * FROM messages ORDER BY conversation_id, seq",
    "message_revisions": "SELECT * FROM message_revisions ORDER BY message_id, revision",
    "dlp_matches": "SELECT * FROM dlp_matches ORDER BY id",
    "supervision_flags": "SELECT * FROM supervision_flags ORDER BY id",
    "message_media": "SELECT message_id, media_id FROM message_media ORDER BY message_id, media_id",
}


@pytest.fixture
async def upgrade_dsn(postgres: PostgresForTests, tmp_path: Path) -> AsyncIterator[str]:
    """A database migrated up to 0026 (every delta before 0027) with the demo data."""
    before = tmp_path / "schema-0026"
    before.mkdir()
    for entry in default_schema_dir().iterdir():
        if entry.name.endswith(".sql") and int(entry.name[:4]) < 27:
            shutil.copyfile(str(entry), before / entry.name)
    name = f"partition_upgrade_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(postgres.server.dsn("postgres"))
    try:
        await admin.execute(f"CREATE DATABASE {name}")
    finally:
        await admin.close()
    dsn = postgres.server.dsn(name)
    await migrate(dsn, before)
    await seed_demo(dsn)
    yield dsn
    admin = await asyncpg.connect(postgres.server.dsn("postgres"))
    try:
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    finally:
        await admin.close()


@asynccontextmanager
async def _recorded(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[list[tuple[str, tuple[Any, ...]]]]:
    """Every statement the hub's stores send (query text and arguments) while the block runs."""
    seen: list[tuple[str, tuple[Any, ...]]] = []

    def record(q: Any) -> None:
        seen.append((q.query, tuple(q.args)))

    def logging(orig: Callable[..., Any]) -> Callable[..., Any]:
        @asynccontextmanager
        async def wrapped(self: Database, name: str, **kw: Any) -> AsyncIterator[Conn]:
            async with orig(self, name, **kw) as conn:
                conn.add_query_logger(record)
                try:
                    yield conn
                finally:
                    conn.remove_query_logger(record)

        return wrapped

    with monkeypatch.context() as m:
        m.setattr(Database, "connection", logging(Database.connection))
        m.setattr(Database, "transaction", logging(Database.transaction))
        yield seen


def _scans(plan: dict[str, Any]) -> list[dict[str, Any]]:
    """Every node of a JSON plan that reads a relation."""
    out = [plan] if "Relation Name" in plan else []
    for child in plan.get("Plans", []):
        out.extend(_scans(child))
    return out


async def _explain(conn: asyncpg.Connection, sql: str, args: tuple[Any, ...]) -> list[dict[str, Any]]:
    """The scans of ``sql`` on partitions of the partitioned tables that run: as executed
    (EXPLAIN ANALYZE, rolled back), or as planned for an insert (run again, it would collide
    with the row it made)."""
    analyze = re.search(r"\bINSERT\b", sql) is None
    tx = conn.transaction()
    await tx.start()
    try:  # what a DELETE or UPDATE did, and a read's row locks, go with the rollback
        [plan] = json.loads(await conn.fetchval(f"EXPLAIN ({'ANALYZE, ' if analyze else ''}FORMAT JSON) " + sql, *args))
    finally:
        await tx.rollback()
    scans = [s for s in _scans(plan["Plan"]) if s["Relation Name"].startswith(tuple(p + "_p" for p in PARTITIONED))]
    return [s for s in scans if s.get("Actual Loops", 1) > 0]


async def _link_media_before_0027(conn: Conn, links: Sequence[tuple[str, str, str]]) -> None:
    """:func:`bankhub.storage.retention.link_media_txn` as it was at 0026."""
    if links:
        await conn.execute(
            """INSERT INTO message_media (message_id, media_id)
               SELECT * FROM unnest($1::uuid[], $2::uuid[]) ON CONFLICT DO NOTHING""",
            [uuid.UUID(m) for _, m, _ in links],
            [uuid.UUID(d) for _, _, d in links],
        )


async def _snapshot(conn: asyncpg.Connection) -> dict[str, list[tuple[Any, ...]]]:
    return {table: [tuple(r) for r in await conn.fetch(sql)] for table, sql in SNAPSHOTS.items()}


async def _catalog(conn: asyncpg.Connection) -> dict[str, list[tuple[Any, ...]]]:
    """What the upgrade must keep of the two tables' definitions: columns (order, type, NULL,
    default), CHECK constraints, and the foreign keys out of and into them with their actions."""
    tables = list(PARTITIONED)
    return {
        "columns": [tuple(r) for r in await conn.fetch(
            """SELECT table_name::text, ordinal_position, column_name::text, data_type::text, is_nullable::text, column_default::text
               FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = ANY($1::text[])
               ORDER BY 1, 2""", tables)],
        "checks": sorted(tuple(r) for r in await conn.fetch(
            """SELECT conrelid::regclass::text, conname::text, pg_get_constraintdef(oid) FROM pg_constraint
               WHERE contype = 'c' AND conrelid::regclass::text = ANY($1::text[])""", tables)),
        "foreign keys": sorted(tuple(r) for r in await conn.fetch(
            """SELECT conname::text, conrelid::regclass::text, confrelid::regclass::text,
                      confdeltype::text, confupdtype::text, confmatchtype::text, condeferrable
               FROM pg_constraint WHERE contype = 'f' AND conparentid = 0
                 AND (conrelid::regclass::text = ANY($1::text[]) OR confrelid::regclass::text = ANY($1::text[]))""", tables)),
    }


async def _privileges(conn: asyncpg.Connection, role: str) -> dict[str, list[str]]:
    """What ``role`` (directly or through PUBLIC) may do on each of the two tables."""
    return {
        t: await conn.fetchval(
            """SELECT coalesce(array_agg(p ORDER BY p), '{}') FROM
               unnest(ARRAY['SELECT', 'INSERT', 'UPDATE', 'DELETE', 'TRUNCATE', 'REFERENCES', 'TRIGGER']) p
               WHERE has_table_privilege($1, $2, p)""", role, t)
        for t in PARTITIONED
    }


async def test_the_upgrade_partitions_messages_keeps_every_row_and_prunes_by_conversation(
    upgrade_dsn: str, key_file: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dsn = upgrade_dsn
    owner = await asyncpg.connect(dsn)
    role = f"bankhub_app_{uuid.uuid4().hex[:8]}"
    await owner.execute(f"CREATE ROLE {role} LOGIN")
    nodes = Nodes(dsn_as(dsn, role), key_file)
    try:
        await grant_app_role(owner, role)
        settings: dict[str, Any] = {"media_dir": str(tmp_path / "media"), "retention_floor_days": FLOOR, "supervision_sample_rate": 1.0}
        # at 0026, through the hub: texts, an edit, a masked card number, a picture; a sampled RM message.
        # The send links a picture to its message as the hub did before 0027 gave message_media its
        # conversation_id column (the one statement of the send that changed with the delta)
        monkeypatch.setattr(message_actions, "link_media_txn", _link_media_before_0027)
        old = await nodes.start("old", **settings)
        li, zhang, wang = await login(old, "c.li"), await login(old, "c.zhang"), await login(old, "rm.wang")
        conv = await open_direct(old, li, "rm.wang")
        sent = await _texts(old, li, conv, ["one", "two", f"card {CARD}"])
        await _edit(old, li, conv, sent[0]["message_id"], "one, edited")
        media_id, _ = await _image(old, li, conv)
        reviewed = await open_direct(old, zhang, "rm.wang")
        await _texts(old, wang, reviewed, ["Good morning, Mr Zhang"])
        await nodes.stop_all()
        monkeypatch.undo()
        before = await _snapshot(owner)
        assert [len(before[t]) for t in SNAPSHOTS] == [6, 1, 1, 1, 1]  # 5 in conv (with the edit), 1 sampled

        catalog, privileges = await _catalog(owner), await _privileges(owner, role)
        assert privileges["message_revisions"] == ["INSERT", "SELECT"]
        # default privileges an administrator set for new tables do not reach the new relations:
        # the append-only revisions and the partitions stay as they were
        grant_all = f"SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON TABLES TO {role}, PUBLIC"
        await owner.execute(f"ALTER DEFAULT PRIVILEGES GRANT {grant_all}")
        applied = await migrate(dsn)
        await owner.execute(f"ALTER DEFAULT PRIVILEGES REVOKE {grant_all.replace(' TO ', ' FROM ')}")
        assert [d.version for d in applied] == [27]
        assert await _catalog(owner) == catalog
        assert await _privileges(owner, role) == privileges

        # the tables are partitioned, 16 ways, and hold exactly what they held
        for table in PARTITIONED:
            assert await owner.fetchval("SELECT relkind::text FROM pg_class WHERE oid = $1::regclass", table) == "p"
            parts = await owner.fetchval("SELECT count(*) FROM pg_inherits WHERE inhparent = $1::regclass", table)
            assert parts == 16
        assert await _snapshot(owner) == before
        assert await owner.fetchval(
            """SELECT count(*) FROM message_media l JOIN messages m ON m.conversation_id = l.conversation_id AND m.id = l.message_id
               WHERE l.media_id = $1""",
            uuid.UUID(media_id),
        ) == 1

        # the hub's role keeps what grant-app-role gave it on the tables, and gets nothing on a
        # partition (the append-only revisions stay append-only) — also after a re-run
        for _ in range(2):
            assert await owner.fetchval("SELECT has_table_privilege($1, 'messages', 'DELETE')", role)
            assert await owner.fetchval("SELECT has_table_privilege($1, 'message_revisions', 'INSERT')", role)
            assert not await owner.fetchval("SELECT has_table_privilege($1, 'message_revisions', 'DELETE')", role)
            assert not await owner.fetchval(
                """SELECT bool_or(has_table_privilege($1, c.oid, p)) FROM pg_class c,
                          unnest(ARRAY['SELECT', 'INSERT', 'UPDATE', 'DELETE']) p WHERE c.relispartition""",
                role,
            )
            await grant_app_role(owner, role)
        # a privilege on a partition bypasses its parent's: grant-app-role refuses one that leaks
        await owner.execute("GRANT DELETE ON message_revisions_p03 TO PUBLIC")
        with pytest.raises(AppRoleError, match="DELETE on message_revisions_p03"):
            await grant_app_role(owner, role)
        await owner.execute("REVOKE DELETE ON message_revisions_p03 FROM PUBLIC")
        await grant_app_role(owner, role)

        # enough other conversations that the planner's choice is a real one (30,000 messages, 18,000 revisions)
        await owner.execute(
            """WITH c AS (
                   INSERT INTO conversations (id, kind, title, created_by, last_seq)
                   SELECT gen_random_uuid(), 'group', 'bulk ' || g, u.id, 100
                   FROM generate_series(1, 300) g, (SELECT id FROM users WHERE username = 'rm.wang') u
                   RETURNING id, created_by)
               INSERT INTO messages (conversation_id, seq, id, sender_id, client_msg_id, kind, body, created_at)
               SELECT c.id, s, gen_random_uuid(), c.created_by, 'b' || s, 'text', '{}'::bytea, now() - interval '400 days'
               FROM c, generate_series(1, 100) s"""
        )
        await owner.execute(
            """INSERT INTO message_revisions (conversation_id, message_id, revision, kind, change_seq, body, body_key_id, changed_at)
               SELECT m.conversation_id, m.id, 1, 'edit', m.seq + 40, '\\x00'::bytea, 'x', now()
               FROM messages m JOIN conversations c ON c.id = m.conversation_id WHERE c.title LIKE 'bulk %' AND m.seq <= 60"""
        )
        await owner.execute("ANALYZE messages")
        await owner.execute("ANALYZE message_revisions")
        home = await owner.fetchval("SELECT tableoid::regclass::text FROM messages WHERE conversation_id = $1 LIMIT 1", uuid.UUID(conv))

        # after the upgrade, through the hub: a send routed to its partition, an edit, history,
        # sync, and a purge whose cascades take the revisions, DLP rows and media links along
        new = await nodes.start("new", **settings)
        li = await login(new, "c.li")
        async with _recorded(monkeypatch) as seen:
            later = await _texts(new, li, conv, ["after the upgrade"])
            await _edit(new, li, conv, later[0]["message_id"], "after the upgrade, edited")
            async with _client(new, li) as http:
                r = await http.get(f"/v1/conversations/{conv}/messages", params={"limit": 50})
                assert r.status_code == 200, r.text
                texts = [m["body"].get("text") for m in sorted(r.json()["messages"], key=lambda m: m["seq"])]
                assert texts[0] == "one, edited" and "after the upgrade, edited" in texts
            ws = await RawClient.connect(new.ws_url, li)
            try:
                synced = await ws.request({"type": "sync", "since": {conv: 1}, "limit": 10})
                assert synced["type"] != "error", synced
            finally:
                await ws.close()
            await _backdate(dsn, conv, 400)
            async with _client(new, await login(new, "co.sun")) as co:
                # the investigator's search joins the masked value's row to its message
                r = await co.post(
                    "/v1/compliance/dlp/search",
                    json={"kind": "card", "value": CARD, "reason": "fraud_investigation", "case_ref": "CASE-27"},
                )
                assert r.status_code == 200 and [m["seq"] for m in r.json()["matches"]] == [3], r.text
                await _policy(co, "kind", "direct", 40)
                run = await _wait_done(co, (await co.post(PURGES)).json()["run_id"])
        assert run["state"] == "done", run
        assert await owner.fetchval("SELECT count(*) FROM messages WHERE conversation_id = $1", uuid.UUID(conv)) == 1  # the newest stays
        for table in ("message_revisions", "dlp_matches", "message_media"):
            assert await owner.fetchval(f"SELECT count(*) FROM {table} WHERE conversation_id = $1", uuid.UUID(conv)) == 0, table
        assert await owner.fetchval("SELECT count(*) FROM supervision_flags WHERE conversation_id = $1", uuid.UUID(reviewed)) == 1

        # the hub's own statements on the partitioned tables: each reads through an index, and
        # one naming a conversation reads that conversation's partition only
        statements = {
            sql: args for sql, args in seen
            if any(f" {t} " in f" {sql} ".replace("\n", " ") for t in PARTITIONED) and not sql.lstrip().upper().startswith("EXPLAIN")
        }
        names: dict[str, Callable[[str], bool]] = {
            "history": lambda s: "ORDER BY m.seq DESC" in s,
            "sync": lambda s: "LATERAL" in s and "y.seq > COALESCE(s.cursor, 0)" in s,
            "send": lambda s: "INSERT INTO messages" in s,
            "edit target": lambda s: "FOR UPDATE OF m" in s,
            "due scan": lambda s: "cutoff" in s,
            "purge delete": lambda s: s.lstrip().startswith("DELETE FROM messages"),
            "DLP search": lambda s: "FROM dlp_matches d JOIN messages m" in s,
        }
        for label, match in names.items():
            assert any(match(s) for s in statements), f"no {label} statement was recorded"
        for sql, args in statements.items():
            ran = await _explain(owner, sql, args)
            # a bitmap heap scan reads the rows a bitmap index scan found: an index too
            assert all(s["Node Type"] in ("Index Scan", "Index Only Scan", "Bitmap Heap Scan") for s in ran), (sql, [(s["Node Type"], s["Relation Name"]) for s in ran])
            if re.search(r"\bconversation_id = \$1\b", re.sub(r"\b[a-z_]+\.conversation_id", "conversation_id", sql)):
                assert {s["Relation Name"] for s in ran} <= {home, home.replace("messages_", "message_revisions_")}, sql
    finally:
        await nodes.stop_all()
        await owner.execute(f"DROP OWNED BY {role}")
        await owner.execute(f"DROP ROLE {role}")
        await owner.close()


async def test_the_purge_names_a_message_by_its_conversation_not_by_id_alone(nodes: Nodes, dsn: str, tmp_path: Path) -> None:
    """A message id is unique per conversation only (0027): an open review of a message in one
    conversation keeps that message, not a due one with the same id in another conversation."""
    node = await nodes.start(media_dir=str(tmp_path / "media"), retention_floor_days=FLOOR, supervision_sample_rate=0)
    li, zhang, sun = await login(node, "c.li"), await login(node, "c.zhang"), await login(node, "co.sun")
    due = await open_direct(node, li, "rm.wang")
    sent = await _texts(node, li, due, ["due", "newest"])
    reviewed = await open_direct(node, zhang, "rm.wang")
    [flagged] = await _texts(node, zhang, reviewed, ["under review"])
    await _fetchval(
        dsn, """INSERT INTO supervision_flags (id, message_id, conversation_id, seq, sender_id)
                SELECT $1, id, conversation_id, seq, sender_id FROM messages WHERE id = $2""",
        uuid.uuid4(), uuid.UUID(flagged["message_id"]))
    # the due message takes the reviewed one's id (accepted: unique per conversation)
    await _fetchval(dsn, "UPDATE messages SET id = $2 WHERE conversation_id = $3 AND id = $1",
                    uuid.UUID(sent[0]["message_id"]), uuid.UUID(flagged["message_id"]), uuid.UUID(due))
    await _backdate(dsn, due, 400)
    async with _client(node, sun) as co:
        await _policy(co, "kind", "direct", 40)
        run = await _wait_done(co, (await co.post(PURGES)).json()["run_id"])
    assert (run["deleted_messages"], run["refused_held"]) == (1, 0), run
    assert flagged["message_id"] not in await _ids(dsn, due)
    assert flagged["message_id"] in await _ids(dsn, reviewed)


async def test_the_upgrade_waits_for_a_send_in_flight_instead_of_deadlocking(upgrade_dsn: str) -> None:
    """0027 takes its locks first, in the send's order (conversations, then messages): a send
    that holds its conversation row and then inserts its message finishes, and the upgrade
    runs after it, rather than the two waiting on each other."""
    owner = await asyncpg.connect(upgrade_dsn)
    send = await asyncpg.connect(upgrade_dsn)
    try:
        sender = await owner.fetchval("SELECT id FROM users WHERE username = 'rm.wang'")
        conv = await owner.fetchval(
            "INSERT INTO conversations (id, kind, title, created_by) VALUES (gen_random_uuid(), 'group', 'in flight', $1) RETURNING id",
            sender,
        )
        tx = send.transaction()
        await tx.start()
        # the send's seq allocation: its conversation row, held until it commits
        seq = await send.fetchval("UPDATE conversations SET last_seq = last_seq + 1 WHERE id = $1 RETURNING last_seq", conv)
        upgrading = asyncio.create_task(migrate(upgrade_dsn))
        await asyncio.sleep(1.5)  # the upgrade has started and waits for a lock
        assert not upgrading.done()
        await send.execute(
            """INSERT INTO messages (conversation_id, seq, id, sender_id, client_msg_id, kind, body, created_at)
               VALUES ($1, $2, gen_random_uuid(), $3, 'in-flight', 'text', '{}'::bytea, now())""",
            conv, seq, sender,
        )
        await tx.commit()
        applied = await asyncio.wait_for(upgrading, 60)
        assert [d.version for d in applied] == [27]
        assert await owner.fetchval("SELECT count(*) FROM messages WHERE conversation_id = $1", conv) == 1
        assert await owner.fetchval("SELECT relkind::text FROM pg_class WHERE oid = 'messages'::regclass") == "p"
    finally:
        await send.close()
        await owner.close()
