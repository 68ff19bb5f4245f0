"""Operations: `bankhub dev` as a new user runs it, migrations, health and the OpenAPI document."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from pathlib import Path

import asyncpg
import httpx
import pytest

from bankhub.runner import RunningNode
from bankhub.storage.migrate import MigrationError, load_deltas, migrate, pending

from ..support.nodeproc import poll_ready
from ..support.postgres import PostgresForTests, database_name


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def test_bankhub_dev_starts_seeds_once_and_prints_logins(tmp_path: Path) -> None:
    port = _free_port()
    bankhub = Path(sys.executable).with_name("bankhub")

    async def run_once(stop_with: signal.Signals = signal.SIGINT) -> str:
        proc = await asyncio.create_subprocess_exec(
            str(bankhub), "dev", "--port", str(port), "--data-dir", str(tmp_path / "var"),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
                await poll_ready(http, 900)  # initdb on first run; generous for a busy CI machine
                r = await http.post("/v1/sessions", json={"username": "co.sun", "password": "bankhub-demo"})
                assert r.status_code == 201 and r.json()["user"]["role"] == "compliance"
            # while it runs, other commands find its database through the same data dir
            code, out, err = await _bankhub("audit", "verify", "--data-dir", str(tmp_path / "var"), cwd=tmp_path)
            assert code == 0 and out.startswith("audit log intact"), (out, err)
        finally:
            proc.send_signal(stop_with)
            out, _ = await asyncio.wait_for(proc.communicate(), 30)
        assert proc.returncode == 0, out.decode()
        return out.decode()

    first = await run_once()
    assert "demo data seeded" in first
    assert "created key file" in first and ((tmp_path / "var" / "keys.json").stat().st_mode & 0o777) == 0o600
    assert f"http://127.0.0.1:{port}/openapi.json" in first and f"ws://127.0.0.1:{port}/v1/ws" in first
    assert f"--data-dir {tmp_path / 'var'}" in first  # the banner tells how other commands reach its database
    for user in ("c.li", "c.zhang", "c.zhou", "rm.wang", "rm.chen", "agent.zhao", "ho.admin", "br.admin", "co.sun"):
        assert user in first
    # the demo widget partner: its page origin printed, its id and secret in a 0600 file
    assert "demo widget partner demo-shop registered for http://127.0.0.1:8765" in first
    assert f"http://127.0.0.1:{port}/widget/loader.js" in first
    assert ((tmp_path / "var" / "demo-shop.secret").stat().st_mode & 0o777) == 0o600
    second = await run_once(signal.SIGTERM)  # same data dir: reuses the database, does not seed again
    assert "demo data seeded" not in second
    assert "demo widget partner" not in second
    # stopped by Ctrl-C or SIGTERM alike, it leaves no Postgres running behind it
    import psutil

    pgdata = str((tmp_path / "var" / "pg").resolve())
    for _ in range(100):
        left = [p for p in psutil.process_iter(["cmdline"]) if pgdata in " ".join(p.info["cmdline"] or [])]
        if not left:
            break
        await asyncio.sleep(0.1)
    assert not left, left and "created key file" not in second  # same keys: the data stays readable


async def test_migrations_apply_once_under_concurrency_and_detect_edits(postgres: PostgresForTests, tmp_path: Path) -> None:
    admin = await asyncpg.connect(postgres.server.dsn("postgres"))
    await admin.execute("DROP DATABASE IF EXISTS migtest")
    await admin.execute("CREATE DATABASE migtest")
    await admin.close()
    dsn = postgres.server.dsn("migtest")
    versions = [d.version for d in load_deltas()]
    assert [d.version for d in await pending(dsn)] == versions
    results = await asyncio.gather(*(migrate(dsn) for _ in range(4)))
    assert sorted(len(r) for r in results) == [0, 0, 0, len(versions)]  # exactly one runner applied the deltas
    assert await pending(dsn) == []
    edited = tmp_path / "schema"
    edited.mkdir()
    for src in (Path(__file__).resolve().parents[2] / "server" / "bankhub" / "storage" / "schema").glob("*.sql"):
        (edited / src.name).write_text(src.read_text() + "\n-- edited\n")
    with pytest.raises(MigrationError, match="changed after it was applied"):
        await migrate(dsn, edited)


async def test_health_readiness_and_openapi(node: RunningNode) -> None:
    async with httpx.AsyncClient(base_url=node.http_url) as http:
        assert (await http.get("/healthz")).json() == {"status": "ok"}
        ready = (await http.get("/readyz")).json()
        assert ready["checks"] == {"postgres": True, "broker": True, "draining": False}
        doc = (await http.get("/openapi.json")).json()
        assert doc["openapi"].startswith("3.1")
        for path in ("/v1/sessions", "/v1/ws-tickets", "/v1/conversations", "/v1/conversations/{conversation_id}/messages", "/readyz"):
            assert path in doc["paths"]
        assert "LoginBody" in doc["components"]["schemas"]
        missing = await http.get("/v1/nothing")
        assert missing.status_code == 404 and missing.json()["code"] == "not_found"
        wrong = await http.post("/v1/sessions", json={"username": "c.li", "password": "wrong"})
        assert wrong.status_code == 401 and wrong.json()["code"] == "unauthorized"
        unknown = await http.post("/v1/sessions", json={"username": "nobody", "password": "x"})
        assert unknown.json() == wrong.json()  # no hint which usernames exist
        junk = await http.post("/v1/sessions", content=b"{", headers={"content-type": "application/json"})
        assert junk.status_code == 400 and junk.json()["code"] == "invalid_request"
        big = await http.post("/v1/sessions", content=b"x" * 70000, headers={"content-type": "application/json"})
        assert big.status_code == 413
        no_auth = await http.get("/v1/conversations")
        assert no_auth.status_code == 401 and no_auth.headers["www-authenticate"] == "Bearer"


async def test_readiness_fails_when_postgres_is_gone(node: RunningNode, postgres: PostgresForTests, dsn: str) -> None:
    admin = await asyncpg.connect(postgres.server.dsn("postgres"))
    try:
        name = database_name(dsn)
        # refuse new connections first, then end the existing ones: the hub's background jobs
        # (schedulers, sweeps) would otherwise reconnect in between
        await admin.execute(f"ALTER DATABASE {name} WITH ALLOW_CONNECTIONS false")
        for _ in range(100):  # termination is asynchronous: wait until the hub's sessions are gone
            await admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", name)
            if not await admin.fetchval("SELECT count(*) FROM pg_stat_activity WHERE datname = $1", name):
                break
            await asyncio.sleep(0.05)
        async with httpx.AsyncClient(base_url=node.http_url) as http:
            r = await http.get("/readyz")
            assert r.status_code == 503 and r.json()["code"] == "not_ready"
        await admin.execute(f"ALTER DATABASE {name} WITH ALLOW_CONNECTIONS true")
        async with httpx.AsyncClient(base_url=node.http_url) as http:
            statuses = []
            for _ in range(50):  # recovers by itself, within seconds
                statuses.append((await http.get("/readyz")).status_code)
                if statuses[-1] == 200:
                    break
                await asyncio.sleep(0.1)
            assert statuses[-1] == 200, statuses
    finally:
        await admin.close()


def test_serve_refuses_to_start_without_a_database_url() -> None:
    import subprocess

    env = {k: v for k, v in os.environ.items() if not k.startswith("BANKHUB_")}
    proc = subprocess.run([str(Path(sys.executable).with_name("bankhub")), "serve"], env=env, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2 and "BANKHUB_DATABASE_URL is required" in proc.stderr


async def _bankhub(*args: str, cwd: Path, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """Run ``bankhub ARGS`` with no BANKHUB_* variables but ``env``; returns (exit code, stdout, stderr)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("BANKHUB_")}
    proc = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).with_name("bankhub")), *args, cwd=cwd, env={**clean, **(env or {})},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_database_commands_exit_2_with_one_line_when_the_database_is_unreachable(tmp_path: Path) -> None:
    # 1 means "the audit chain is broken" to a monitor: an outage must never look like tampering
    unreachable = f"postgresql://bankhub:s3cret@127.0.0.1:{_free_port()}/bankhub"
    key_file = tmp_path / "keys.json"
    from bankhub.crypto import LocalKeyFile

    LocalKeyFile.create(key_file)
    commands = [
        ["audit", "verify"],
        ["db", "grant-app-role", "bankhub_app"],
        ["migrate"],
        ["keys", "status", "--file", str(key_file)],
        ["keys", "shred", "--conversation", "00000000-0000-0000-0000-000000000000"],
        ["systems", "list"],
        ["alerts", "dead-letters"],
    ]
    runs = [_bankhub(*c, "--database-url", unreachable, cwd=tmp_path) for c in commands]
    runs.append(_bankhub("audit", "verify", cwd=tmp_path, env={"BANKHUB_DATABASE_URL": unreachable}))
    runs.append(_bankhub("serve", cwd=tmp_path, env={"BANKHUB_DATABASE_URL": unreachable, "BANKHUB_KEY_FILE": str(key_file)}))
    # no URL anywhere, and no `bankhub dev` running in ./var (the default data dir) or the one named
    runs.append(_bankhub("audit", "verify", cwd=tmp_path))
    runs.append(_bankhub("audit", "verify", "--data-dir", str(tmp_path / "nothing"), cwd=tmp_path))
    results = await asyncio.gather(*runs)
    for command, (code, out, err) in zip([*commands, ["env"], ["serve"], ["no url"], ["no dev"]], results, strict=True):
        assert code == 2, (command, code, out, err)
        assert "Traceback" not in err + out and len(err.strip().splitlines()) == 1, (command, err)
        assert err.startswith("bankhub ") and "s3cret" not in err, (command, err)
    assert "cannot connect to the database at 127.0.0.1:" in results[0][2] and "Connection refused" in results[0][2]
    assert "set BANKHUB_DATABASE_URL" in results[-2][2]
    assert "no running `bankhub dev` database in" in results[-1][2]


async def test_cli_finds_the_dev_database_through_the_data_dir(postgres: PostgresForTests, tmp_path: Path) -> None:
    """`bankhub dev --data-dir DIR` keeps its embedded Postgres in DIR/pg; every command finds the
    running server there (its postmaster.pid) with --data-dir DIR, or in ./var by default. The
    test server is laid out the same way, so it stands in for a running `bankhub dev`."""
    data_dir = postgres.server.data_dir.parent
    code, out, err = await _bankhub("migrate", "--data-dir", str(data_dir), cwd=tmp_path)
    assert code == 0 and "applied" in out, err
    code, out, err = await _bankhub("audit", "verify", "--data-dir", str(data_dir), cwd=tmp_path)
    assert code == 0 and out.startswith("audit log intact"), (out, err)
    # no flag, no BANKHUB_DATABASE_URL: ./var, the default of `bankhub dev`
    (tmp_path / "var").symlink_to(data_dir)
    code, out, err = await _bankhub("audit", "verify", cwd=tmp_path)
    assert code == 0 and out.startswith("audit log intact"), (out, err)
    # an explicit URL still wins
    code, _, err = await _bankhub("audit", "verify", "--database-url", f"postgresql://x@127.0.0.1:{_free_port()}/x", cwd=tmp_path)
    assert code == 2 and "cannot connect" in err
