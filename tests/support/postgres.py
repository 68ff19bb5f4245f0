"""A real PostgreSQL server for tests: one embedded server per run, one database per test.

The server starts once per session. A template database is migrated and seeded with
the demo data once; every test gets a fresh copy of it (``CREATE DATABASE ... TEMPLATE``
takes milliseconds), so tests never see each other's rows.
"""

from __future__ import annotations

import asyncio
import itertools
import tempfile
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg

from bankhub.demo import seed_demo
from bankhub.embedded import EmbeddedPostgres, start_postgres
from bankhub.storage.migrate import migrate

__all__ = ["PostgresForTests", "database_name"]

TEMPLATE = "bankhub_template"
_counter = itertools.count()


def database_name(dsn: str) -> str:
    return urlsplit(dsn).path.lstrip("/")


class PostgresForTests:
    def __init__(self) -> None:
        self._tmp = tempfile.mkdtemp(prefix="bankhub-test-pg-")
        self.server: EmbeddedPostgres = start_postgres(Path(self._tmp), delete_on_stop=True)
        asyncio.run(self._prepare_template())

    async def _prepare_template(self) -> None:
        admin = await asyncpg.connect(self.server.dsn("postgres"))
        try:
            await admin.execute(f"DROP DATABASE IF EXISTS {TEMPLATE}")
            await admin.execute(f"CREATE DATABASE {TEMPLATE}")
        finally:
            await admin.close()
        dsn = self.server.dsn(TEMPLATE)
        await migrate(dsn)
        await seed_demo(dsn)

    async def new_database(self) -> str:
        """A fresh database holding the migrated schema and the demo data; returns its DSN."""
        name = f"t_{next(_counter)}"
        admin = await asyncpg.connect(self.server.dsn("postgres"))
        try:
            await admin.execute(f"DROP DATABASE IF EXISTS {name}")
            await admin.execute(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE}")
        finally:
            await admin.close()
        return self.server.dsn(name)

    async def drop_database(self, dsn: str) -> None:
        name = database_name(dsn)
        admin = await asyncpg.connect(self.server.dsn("postgres"))
        try:
            await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        finally:
            await admin.close()

    def stop(self) -> None:
        self.server.stop()
