"""The embedded Postgres a benchmark runs against, and its statement counters.

:class:`PgEnv` starts ``bankhub.embedded.start_postgres`` (the server ``bankhub dev`` uses,
stock settings) in a fresh temporary directory, applies the migrations and deletes
everything on :meth:`PgEnv.stop`. With ``stat_statements=True`` it also loads
``pg_stat_statements`` (shipped with the embedded server's binaries): that needs
``shared_preload_libraries``, hence one stop and start of the fresh server before use.
"""

from __future__ import annotations

import asyncio
import shutil
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any

import asyncpg

__all__ = ["PgEnv", "statement_counts", "statement_delta", "stop_on_signals"]


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def stop_on_signals() -> None:
    """SIGTERM and SIGINT (even where a shell started us with it ignored) raise KeyboardInterrupt,
    so a run stops in order: load generators, hub, then Postgres."""
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)


def _log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


class PgEnv:
    """One embedded Postgres in its own temporary directory (``tmp``), migrated."""

    def __init__(self, *, stat_statements: bool = False, prefix: str = "bankhub-bench-") -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix=prefix))
        self.stat_statements = False
        self._pg: Any = None
        try:
            self._start(stat_statements)
        except BaseException:
            self.stop()
            raise

    def _start(self, stat_statements: bool) -> None:
        from bankhub.embedded import start_postgres
        from bankhub.storage.migrate import migrate

        _log(f"bench: starting embedded Postgres in {self.tmp}")
        if stat_statements:
            # a fresh server, told to preload the extension, stopped (kept) and started again
            pg = start_postgres(self.tmp, delete_on_stop=False)
            try:
                asyncio.run(_execute(pg.dsn(), "ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'"))
            finally:
                pg.stop()
        self._pg = start_postgres(self.tmp, delete_on_stop=True)
        asyncio.run(migrate(self.dsn))
        if stat_statements:
            try:
                asyncio.run(_execute(self.dsn, "CREATE EXTENSION IF NOT EXISTS pg_stat_statements"))
                self.stat_statements = True
            except (asyncpg.PostgresError, OSError) as exc:
                _log(f"bench: pg_stat_statements unavailable ({exc!r}); falling back to pg_stat_database")

    @property
    def dsn(self) -> str:
        dsn: str = self._pg.dsn()
        return dsn

    @property
    def data_dir(self) -> Path:
        path: Path = self._pg.data_dir
        return path

    def stop(self) -> None:
        if self._pg is not None:
            pg, self._pg = self._pg, None
            try:
                pg.stop()
                _log("bench: Postgres stopped")
            except Exception as exc:  # a Ctrl-C may have reached it first
                _log(f"bench: Postgres stop: {exc!r}")
        shutil.rmtree(self.tmp, ignore_errors=True)


async def _execute(dsn: str, sql: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def statement_counts(dsn: str, use_stat_statements: bool) -> dict[str, Any]:
    """Executions so far: per normalised statement (``pg_stat_statements``, when loaded) and,
    always, the database's committed + rolled-back transactions (``pg_stat_database``; in
    autocommit each statement is its own transaction; lags until the backend reports).
    Statements that read these counters themselves are left out.
    """
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("SELECT pg_stat_clear_snapshot()")
        out: dict[str, Any] = {}
        row = await conn.fetchrow(
            "SELECT xact_commit + xact_rollback AS xacts FROM pg_stat_database WHERE datname = current_database()"
        )
        out["xacts"] = int(row["xacts"]) if row else 0
        if use_stat_statements:
            rows = await conn.fetch(
                """SELECT queryid, query, calls FROM pg_stat_statements
                   WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())"""
            )
            out["statements"] = {
                int(r["queryid"]): (r["query"], int(r["calls"]))
                for r in rows
                if r["queryid"] is not None and "pg_stat_" not in r["query"] and "pg_database" not in r["query"]
            }
        return out
    finally:
        await conn.close()


def statement_delta(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """Calls per statement between two :func:`statement_counts` (statements with 0 calls left out)."""
    out: dict[str, Any] = {"xacts": after["xacts"] - before["xacts"]}
    if "statements" in after:
        calls: list[tuple[str, int]] = []
        b = before.get("statements", {})
        for qid, (query, n) in after["statements"].items():
            d = n - b.get(qid, ("", 0))[1]
            if d > 0:
                calls.append((" ".join(query.split()), d))
        calls.sort(key=lambda x: -x[1])
        out["statements"] = calls
    return out
