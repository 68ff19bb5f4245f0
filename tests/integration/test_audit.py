"""The audit log against a real Postgres: what gets recorded, `bankhub audit verify` catching an
insider's edits, concurrent appends, and the privileges of the hub's own database role."""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import pytest

from bankhub.actions import audit
from bankhub.runner import RunningNode
from bankhub.storage.audit import GENESIS_HASH, Head, encode_row, row_hash, verify

from ..conftest import DEMO_PASSWORD, Nodes, login, open_direct

BANKHUB = Path(sys.executable).with_name("bankhub")


def dsn_as(dsn: str, user: str) -> str:
    """The same database, connecting as ``user`` (the test server trusts local connections)."""
    parts = urlsplit(dsn)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{user}:@{host}"))


async def bankhub(dsn: str, *args: str) -> tuple[int, str]:
    env = {**os.environ, "BANKHUB_DATABASE_URL": dsn}
    proc = await asyncio.create_subprocess_exec(
        str(BANKHUB), *args, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode()


async def insider(dsn: str, *statements: str) -> None:
    """What a rogue DBA does: switch the append-only trigger off, edit, switch it back on."""
    conn = await asyncpg.connect(dsn)
    try:
        async with conn.transaction():
            await conn.execute("ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only")
            for sql in statements:
                await conn.execute(sql)
            await conn.execute("ALTER TABLE audit_log ENABLE TRIGGER audit_log_append_only")
    finally:
        await conn.close()


# the demo seed audits the administrative accounts it bootstraps (user.bootstrapped): the
# log of a fresh test database starts with those rows
BOOTSTRAP_ACTION = "user.bootstrapped"


async def fill(node: RunningNode, n: int) -> None:
    for i in range(n):
        await audit.record(
            node.hub, actor=audit.SYSTEM, action="admin.test_event", target=f"thing:{i}", reason=f"r{i}", details={"i": i}
        )


async def test_logins_failures_and_logouts_are_audited(node: RunningNode) -> None:
    hub = node.hub
    boot = await hub.audit.head()
    wrong = "not-the-password-3141"
    token = await login(node, "c.li")
    async with httpx.AsyncClient(base_url=node.http_url) as http:
        r = await http.post("/v1/sessions", json={"username": "c.li", "password": wrong})
        assert r.status_code == 401
        r = await http.post("/v1/sessions", json={"username": "no.such.user", "password": wrong})
        assert r.status_code == 401
        r = await http.delete("/v1/sessions/current", headers={"authorization": f"Bearer {token}"})
        assert r.status_code == 204
    rows = list(reversed([r for r in await hub.audit.recent(limit=10) if r.action != BOOTSTRAP_ACTION]))
    assert [r.action for r in rows] == ["session.login", "session.login_failed", "session.login_failed", "session.revoked"]
    ok, bad, unknown, out = rows
    user = await hub.users.by_username("c.li")
    assert user is not None
    assert (ok.actor, ok.actor_id, ok.ip) == ("c.li", user.id, "127.0.0.1")
    assert ok.target.startswith("session:") and ok.seq == boot.seq + 1 and ok.prev_hash == (boot.hash if boot.seq else GENESIS_HASH)
    assert (bad.actor, bad.actor_id, bad.target, bad.ip) == ("anonymous", None, f"user:{user.id}", "127.0.0.1")
    assert bad.details == {"username": "c.li", "outcome": "bad_password"}
    assert (unknown.target, unknown.details) == ("username:no.such.user", {"username": "no.such.user", "outcome": "unknown_user"})
    assert (out.actor_id, out.target, out.reason) == (user.id, ok.target, "signed out")
    async with hub.db.connection("test") as conn:
        everything = await conn.fetchval("SELECT string_agg(a::text, ' ') FROM audit_log a")
    assert wrong not in everything and DEMO_PASSWORD not in everything
    report = await audit.verify(hub)
    assert report.ok and report.rows == boot.seq + 4 and report.head == Head(boot.seq + 4, out.hash)


async def test_record_commits_and_rolls_back_with_the_callers_transaction(node: RunningNode) -> None:
    hub = node.hub
    boot = await hub.audit.head()

    class Abort(Exception):
        pass

    with pytest.raises(Abort):
        async with hub.db.transaction("test_rollback") as conn:
            await audit.record(hub, actor=audit.SYSTEM, action="admin.doomed", target="x", conn=conn)
            raise Abort
    async with hub.db.transaction("test_commit") as conn:
        row = await audit.record(hub, actor=audit.SYSTEM, action="admin.kept", target="x", conn=conn)
    assert row.seq == boot.seq + 1  # the rolled-back append allocated nothing
    assert [r.action for r in await hub.audit.recent() if r.action != BOOTSTRAP_ACTION] == ["admin.kept"]
    async with hub.db.connection("test_autocommit") as conn:
        with pytest.raises(RuntimeError, match="inside a transaction"):
            await audit.record(hub, actor=audit.SYSTEM, action="admin.x", target="x", conn=conn)
    with pytest.raises(TypeError):
        await audit.record(hub, actor=audit.SYSTEM, action="admin.x", target="x", details={"amount": 1.5})


async def test_verify_cli_passes_on_an_intact_log_and_prints_the_head(node: RunningNode, dsn: str) -> None:
    boot = await node.hub.audit.head()
    code, out = await bankhub(dsn, "audit", "verify")
    assert code == 0 and f"intact: {boot.seq} rows" in out and f"head {boot}" in out
    await fill(node, 7)
    head = await node.hub.audit.head()
    code, out = await bankhub(dsn, "audit", "verify", "--batch-size", "3")
    assert code == 0, out
    assert f"audit log intact: {boot.seq + 7} rows verified" in out and f"head {head}" in out
    code, out = await bankhub(dsn, "audit", "verify", "--expect-head", str(head))
    assert code == 0 and f"anchored head {boot.seq + 7} matches" in out


async def test_verify_cli_fails_after_a_row_is_altered(node: RunningNode, dsn: str) -> None:
    await fill(node, 5)
    await insider(dsn, "UPDATE audit_log SET reason = 'nothing to see' WHERE seq = 3")
    code, out = await bankhub(dsn, "audit", "verify")
    assert code == 1, out
    assert "BROKEN at row 3: altered" in out and "last good row: 2:" in out


async def test_verify_cli_fails_after_details_are_altered(node: RunningNode, dsn: str) -> None:
    await fill(node, 3)
    await insider(dsn, """UPDATE audit_log SET details = '{"i": 100}' WHERE seq = 2""")
    code, out = await bankhub(dsn, "audit", "verify")
    assert code == 1 and "BROKEN at row 2" in out, out


async def test_verify_cli_fails_after_a_row_is_deleted(node: RunningNode, dsn: str) -> None:
    await fill(node, 5)
    await insider(dsn, "DELETE FROM audit_log WHERE seq = 2")
    code, out = await bankhub(dsn, "audit", "verify")
    assert code == 1, out
    assert "BROKEN at row 3: missing: row 2 missing" in out


async def test_verify_cli_fails_after_a_forged_row_is_spliced_in(node: RunningNode, dsn: str) -> None:
    """The forger knows the algorithm and makes the forged row itself hash correctly."""
    await fill(node, 4)
    conn = await asyncpg.connect(dsn)
    try:
        prev = await conn.fetchval("SELECT hash FROM audit_log WHERE seq = 2")
        at = await conn.fetchval("SELECT at FROM audit_log WHERE seq = 2")
        fields = dict(seq=3, at=at, actor_id=None, actor="system", action="admin.alibi", target="thing:x", reason=None, ip=None)
        digest = row_hash(prev, encode_row(**fields, details={}))
    finally:
        await conn.close()
    await insider(
        dsn,
        "UPDATE audit_log SET seq = seq + 1000 WHERE seq >= 3",
        "UPDATE audit_log SET seq = seq - 999 WHERE seq >= 1000",
        f"""INSERT INTO audit_log (seq, at, actor, action, target, details, prev_hash, hash)
            VALUES (3, '{at.isoformat()}', 'system', 'admin.alibi', 'thing:x', '{{}}',
                    '\\x{prev.hex()}', '\\x{digest.hex()}')""",
    )
    code, out = await bankhub(dsn, "audit", "verify")
    assert code == 1, out
    assert "BROKEN at row 4: broken_link" in out


async def test_verify_cli_fails_after_a_forged_row_is_appended(node: RunningNode, dsn: str) -> None:
    """An INSERT needs no trigger bypass: a row that does not chain correctly is caught."""
    await fill(node, 3)
    head = await node.hub.audit.head()
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            """INSERT INTO audit_log (seq, at, actor, action, target, details, prev_hash, hash)
               VALUES ($3, now(), 'co.sun', 'privileged_read', 'conversation:x', '{}', $1, $2)""",
            head.hash,
            bytes(32),
            head.seq + 1,
        )
    finally:
        await conn.close()
    code, out = await bankhub(dsn, "audit", "verify")
    assert code == 1 and f"BROKEN at row {head.seq + 1}: altered" in out, out


async def test_tail_truncation_is_caught_only_against_an_anchored_head(node: RunningNode, dsn: str) -> None:
    await fill(node, 6)
    anchor = await node.hub.audit.head()
    await insider(dsn, "DELETE FROM audit_log WHERE seq > 4")
    code, out = await bankhub(dsn, "audit", "verify")
    assert code == 0 and "4 rows verified" in out  # on its own, a shorter chain is a valid chain
    code, out = await bankhub(dsn, "audit", "verify", "--expect-head", str(anchor))
    assert code == 1 and "BROKEN at row 5: truncated" in out, out
    code, out = await bankhub(dsn, "audit", "verify", "--expect-head", "6:nothex")
    assert code == 2


async def test_concurrent_appends_keep_a_gap_free_valid_chain(nodes: Nodes) -> None:
    a, b = await nodes.start("n1"), await nodes.start("n2")  # two nodes: two pools, two processes' worth

    class Abort(Exception):
        pass

    async def worker(i: int) -> int:
        hub = (a, b)[i % 2].hub
        kept = 0
        for j in range(4):
            if j % 2:
                await audit.record(hub, actor=audit.SYSTEM, action="admin.load", target=f"w{i}", details={"j": j})
                kept += 1
                continue
            try:
                async with hub.db.transaction("test_append") as conn:
                    await audit.record(hub, actor=audit.SYSTEM, action="admin.load", target=f"w{i}", details={"j": j}, conn=conn)
                    if (i + j) % 5 == 0:
                        raise Abort
                kept += 1
            except Abort:
                pass
        return kept

    boot = await a.hub.audit.head()
    kept = boot.seq + sum(await asyncio.gather(*(worker(i) for i in range(40))))
    async with a.hub.db.connection("test") as conn:
        seqs = [r["seq"] for r in await conn.fetch("SELECT seq FROM audit_log ORDER BY seq")]
        report = await verify(conn, batch_size=7)
    assert seqs == list(range(1, kept + 1))
    assert report.ok and report.rows == kept, report.problem


async def test_key_rotation_retirement_and_shredding_are_audited(node: RunningNode, tmp_path: Path) -> None:
    from bankhub.actions.keys import retire_kek, rotate, shred_conversation
    from bankhub.crypto import LocalKeyFile

    hub = node.hub
    conv = await open_direct(node, await login(node, "c.li"), "rm.wang")
    own = LocalKeyFile.create(tmp_path / "keys.json")  # not the node's key file: no messages, nothing to re-wrap
    first = own.active_kek_id()
    report = await rotate(hub.db, own, actor="co.sun")
    await retire_kek(hub.db, own, first)

    class Abort(Exception):
        pass

    async def fail(conn: object) -> None:
        raise Abort

    with pytest.raises(Abort):  # the shred rolls back, and its audit row with it
        await shred_conversation(hub.db, conv, in_transaction=fail)
    assert await shred_conversation(hub.db, conv, reason="erasure request ER-17") == "shredded"
    rows = list(reversed(await hub.audit.recent(limit=3)))
    assert [(r.action, r.actor, r.target) for r in rows] == [
        ("keys.rotated", "co.sun", f"kek:{report.kek_id}"),
        ("keys.retired", "system", f"kek:{first}"),
        ("keys.shredded", "system", f"conversation:{conv}"),
    ]
    assert rows[0].details["added_kek"] is True and rows[2].reason == "erasure request ER-17"
    assert (await audit.verify(hub)).ok


async def test_app_role_can_append_but_never_update_or_delete(nodes: Nodes, dsn: str) -> None:
    role = f"bankhub_app_{uuid.uuid4().hex[:8]}"
    owner = await asyncpg.connect(dsn)
    await owner.execute(f"CREATE ROLE {role} LOGIN")
    try:
        code, out = await bankhub(dsn, "db", "grant-app-role", "postgres")
        assert code == 2 and "superuser" in out
        code, out = await bankhub(dsn, "db", "grant-app-role", role)
        assert code == 0 and "no UPDATE, DELETE, TRUNCATE" in out, out
        code, out = await bankhub(dsn, "db", "grant-app-role", role)  # idempotent
        assert code == 0, out

        # the hub runs as the app role: sign-in works and is audited
        app_dsn = dsn_as(dsn, role)
        nodes.dsn = app_dsn
        node = await nodes.start("app")
        await login(node, "rm.wang")
        assert [r.action for r in await node.hub.audit.recent() if r.action != BOOTSTRAP_ACTION] == ["session.login"]

        app = await asyncpg.connect(app_dsn)
        try:
            assert await app.fetchval("SELECT current_user") == role
            await app.execute(
                """INSERT INTO audit_log (seq, at, actor, action, target, prev_hash, hash)
                   VALUES ((SELECT max(seq) + 1 FROM audit_log), now(), 'x', 'admin.x', 'x', $1, $1)""",
                bytes(32),
            )
            for sql in (
                "UPDATE audit_log SET reason = 'x'",
                "DELETE FROM audit_log",
                "TRUNCATE audit_log",
                "ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only",
                "DROP TABLE audit_log",
                "INSERT INTO schema_migrations (version, name, checksum) VALUES (999, 'x', 'x')",
            ):
                with pytest.raises(asyncpg.exceptions.InsufficientPrivilegeError):
                    await app.execute(sql)
        finally:
            await app.close()
        forged = await owner.fetchval("SELECT max(seq) FROM audit_log")
        code, out = await bankhub(app_dsn, "audit", "verify")  # verifying needs only SELECT
        assert code == 1 and f"BROKEN at row {forged}" in out, out

        # the owner (here even a superuser) is stopped by the trigger
        for sql in ("UPDATE audit_log SET reason = 'x' WHERE seq = 1", "DELETE FROM audit_log WHERE seq = 2", "TRUNCATE audit_log"):
            with pytest.raises(asyncpg.exceptions.RaiseError, match="append-only"):
                await owner.execute(sql)
        assert await owner.fetchval("SELECT count(*) FROM audit_log") == forged
    finally:
        await nodes.stop_all()
        await owner.execute(f"DROP OWNED BY {role}")
        await owner.execute(f"DROP ROLE {role}")
        await owner.close()
