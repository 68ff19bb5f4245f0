"""The membership history (delta 0019): triggers record every way in and out; the upgrade
backfills today's members and the senders who had already left."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

import asyncpg

from bankhub.storage.migrate import default_schema_dir, migrate

from ..support.postgres import PostgresForTests


def _ids(n: int) -> list[uuid.UUID]:
    return [uuid.uuid4() for _ in range(n)]


async def test_the_upgrade_backfills_and_the_triggers_record_joins_and_departures(postgres: PostgresForTests, tmp_path: Path) -> None:
    before = tmp_path / "schema-0018"
    before.mkdir()
    for entry in default_schema_dir().iterdir():
        if entry.name.endswith(".sql") and int(entry.name[:4]) <= 18:
            shutil.copyfile(str(entry), before / entry.name)
    admin = await asyncpg.connect(postgres.server.dsn("postgres"))
    try:
        await admin.execute("DROP DATABASE IF EXISTS membership_upgrade WITH (FORCE)")
        await admin.execute("CREATE DATABASE membership_upgrade")
    finally:
        await admin.close()
    dsn = postgres.server.dsn("membership_upgrade")
    await migrate(dsn, before)
    org, stays, writer, silent, conv = (*_ids(4), uuid.uuid4())
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("INSERT INTO orgs (id, kind, code, name) VALUES ($1, 'head_office', 'HO', 'Head office')", org)
        for uid, name in ((stays, "stays"), (writer, "writer"), (silent, "silent")):
            await conn.execute(
                "INSERT INTO users (id, username, display_name, role, org_id, password_hash) VALUES ($1, $2, $2, 'staff', $3, 'x')",
                uid, name, org,
            )
        await conn.execute("INSERT INTO conversations (id, kind, title, created_by, last_seq) VALUES ($1, 'group', 'g', $2, 3)", conv, stays)
        await conn.execute(
            "INSERT INTO conversation_members (conversation_id, user_id, joined_at) VALUES ($1, $2, '2026-01-01T00:00:00Z')", conv, stays
        )
        # the writer sent two messages and left, the silent one left without writing: before 0019,
        # neither departure was recorded anywhere
        for seq, sender, at in ((1, writer, "2026-02-01T00:00:00Z"), (2, stays, "2026-02-15T00:00:00Z"), (3, writer, "2026-03-01T00:00:00Z")):
            await conn.execute(
                """INSERT INTO messages (conversation_id, seq, id, sender_id, client_msg_id, kind, body, created_at)
                   VALUES ($1, $2, $3, $4, $5, 'text', '{}'::bytea, $6::text::timestamptz)""",
                conv, seq, uuid.uuid4(), sender, f"m{seq}", at,
            )
    finally:
        await conn.close()

    await migrate(dsn)  # 0019 onwards
    conn = await asyncpg.connect(dsn)
    try:
        async def stays_of(uid: uuid.UUID) -> list[tuple[str, str | None]]:
            rows = await conn.fetch(
                """SELECT to_char(joined_at AT TIME ZONE 'UTC', 'YYYY-MM-DD') AS j,
                          to_char(left_at AT TIME ZONE 'UTC', 'YYYY-MM-DD') AS l
                     FROM membership_log WHERE conversation_id = $1 AND user_id = $2 ORDER BY id""",
                conv, uid,
            )
            return [(r["j"], r["l"]) for r in rows]

        assert await stays_of(stays) == [("2026-01-01", None)]
        assert await stays_of(writer) == [("2026-02-01", "2026-03-01")]  # first to last message
        assert await stays_of(silent) == []  # nothing shows they were ever there

        # from now on every way in and out is recorded, in the transaction that makes it
        await conn.execute("INSERT INTO conversation_members (conversation_id, user_id) VALUES ($1, $2)", conv, silent)
        assert [l for _, l in await stays_of(silent)] == [None]
        async with conn.transaction():
            await conn.execute("DELETE FROM conversation_members WHERE conversation_id = $1 AND user_id = $2", conv, silent)
            left_at, now = await conn.fetchrow(
                "SELECT left_at, now() FROM membership_log WHERE conversation_id = $1 AND user_id = $2", conv, silent
            )
            assert left_at == now  # the departing transaction's own clock
        await conn.execute("INSERT INTO conversation_members (conversation_id, user_id) VALUES ($1, $2)", conv, silent)
        history = await stays_of(silent)
        assert len(history) == 2 and history[0][1] is not None and history[1][1] is None  # left, came back: two stays
        open_stays = await conn.fetchval(
            "SELECT count(*) FROM membership_log WHERE conversation_id = $1 AND left_at IS NULL", conv
        )
        assert open_stays == await conn.fetchval("SELECT count(*) FROM conversation_members WHERE conversation_id = $1", conv)
    finally:
        await conn.close()
        admin = await asyncpg.connect(postgres.server.dsn("postgres"))
        try:
            await admin.execute("DROP DATABASE IF EXISTS membership_upgrade WITH (FORCE)")
        finally:
            await admin.close()
