"""Apply the numbered SQL deltas exactly once, under an advisory lock.

The deltas ship inside the package, in ``bankhub/storage/schema/`` (package data, found
with :mod:`importlib.resources`), so an installed wheel migrates as a source checkout does.
They are files named ``NNNN_description.sql``; each runs in its own transaction and
is recorded in ``schema_migrations`` with its checksum. Several nodes starting at once
serialise on a Postgres advisory lock, so each delta is applied by exactly one of them.
A recorded delta whose file has since changed is an error: deltas are append-only.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable

import asyncpg

__all__ = ["Delta", "MigrationError", "default_schema_dir", "load_deltas", "migrate", "pending"]

_LOCK_KEY = 0x62616E6B687562  # "bankhub": one advisory lock for the whole migrator
_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


class MigrationError(Exception):
    pass


@dataclass(frozen=True)
class Delta:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def default_schema_dir() -> Traversable:
    """The deltas shipped with the package: ``bankhub/storage/schema/``."""
    return resources.files("bankhub.storage") / "schema"


def load_deltas(schema_dir: Traversable | None = None) -> list[Delta]:
    """The deltas in ``schema_dir`` (default: the package's), by version. ``schema_dir`` is
    any directory (a :class:`pathlib.Path` will do)."""
    directory = schema_dir or default_schema_dir()
    if not directory.is_dir():
        raise MigrationError(f"schema directory not found: {directory} (a broken installation: reinstall bankhub)")
    deltas = []
    for entry in sorted((e for e in directory.iterdir() if e.name.endswith(".sql")), key=lambda e: e.name):
        m = _NAME.fullmatch(entry.name)
        if not m:
            raise MigrationError(f"bad delta file name {entry.name!r}: want NNNN_name.sql")
        deltas.append(Delta(int(m.group(1)), m.group(2), entry.read_text(encoding="utf-8")))
    versions = [d.version for d in deltas]
    if len(set(versions)) != len(versions):
        raise MigrationError("two deltas share a version number")
    return deltas


async def migrate(dsn: str, schema_dir: Traversable | None = None) -> list[Delta]:
    """Apply pending deltas; returns the ones this call applied."""
    deltas = load_deltas(schema_dir)
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", _LOCK_KEY)
        try:
            await conn.execute(
                """CREATE TABLE IF NOT EXISTS schema_migrations (
                       version    integer PRIMARY KEY,
                       name       text NOT NULL,
                       checksum   text NOT NULL,
                       applied_at timestamptz NOT NULL DEFAULT now())"""
            )
            done = {r["version"]: r["checksum"] for r in await conn.fetch("SELECT version, checksum FROM schema_migrations")}
            applied = []
            for delta in deltas:
                if delta.version in done:
                    if done[delta.version] != delta.checksum:
                        raise MigrationError(f"delta {delta.version:04d}_{delta.name} changed after it was applied")
                    continue
                async with conn.transaction():
                    await conn.execute(delta.sql)
                    await conn.execute(
                        "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                        delta.version,
                        delta.name,
                        delta.checksum,
                    )
                applied.append(delta)
            return applied
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK_KEY)
    finally:
        await conn.close()


async def pending(dsn: str, schema_dir: Traversable | None = None) -> list[Delta]:
    """Deltas not yet applied to the database at ``dsn``."""
    deltas = load_deltas(schema_dir)
    conn = await asyncpg.connect(dsn)
    try:
        exists = await conn.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL")
        done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")} if exists else set()
    finally:
        await conn.close()
    return [d for d in deltas if d.version not in done]
