"""``bankhub migrate`` and ``bankhub db grant-app-role``: the database's schema and roles.

* ``migrate`` — apply the pending schema deltas (safe from several nodes at once: an
  advisory lock); exit 2 when a delta applied earlier was edited since.
* ``db grant-app-role ROLE`` — as the owner, grant the role the hub runs as what it needs:
  no UPDATE, DELETE or TRUNCATE on ``audit_log``.

The database is found as :mod:`bankhub.cli.common` says (``--database-url``, ``--data-dir``,
``BANKHUB_DATABASE_URL``, ``./var``); exit 2 means it could not run, with one line on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import TYPE_CHECKING, Any

from . import common

if TYPE_CHECKING:
    from ..storage.migrate import Delta

__all__ = ["register_migrate", "register", "cmd_migrate", "cmd_db_grant_app_role"]


def cmd_migrate(args: argparse.Namespace) -> int:
    from ..storage.migrate import MigrationError, migrate

    dsn = common.database_url(args)

    async def run() -> list[Delta]:
        await (await common.connect(dsn)).close()
        return await migrate(dsn)

    try:
        applied = asyncio.run(run())
    except MigrationError as exc:  # e.g. a delta edited after it was applied
        print(f"bankhub migrate: {exc}", file=sys.stderr)
        return 2
    print(f"applied {len(applied)} delta(s)" + "".join(f"\n  {d.version:04d}_{d.name}" for d in applied))
    return 0


def cmd_db_grant_app_role(args: argparse.Namespace) -> int:
    import asyncpg

    from ..storage.roles import AppRoleError, grant_app_role

    dsn = common.database_url(args)

    try:
        result = common.with_connection(dsn, lambda conn: grant_app_role(conn, args.role))
    except (AppRoleError, asyncpg.exceptions.InsufficientPrivilegeError) as exc:
        print(f"bankhub db grant-app-role: {exc}", file=sys.stderr)
        return 2
    print(
        f"granted {result.role}: read/write {len(result.read_write)} table(s); "
        f"SELECT, INSERT only (no UPDATE, DELETE, TRUNCATE) on {', '.join(result.append_only)}; "
        f"SELECT only on {', '.join(result.read_only) or '-'}"
    )
    return 0


def register_migrate(subparsers: Any) -> None:
    """Add ``migrate`` to the ``bankhub`` parser's subparsers."""
    mig = subparsers.add_parser("migrate", help="apply pending schema deltas")
    common.add_database_arguments(mig)
    mig.set_defaults(func=common.guard("migrate", cmd_migrate))


def register(subparsers: Any) -> None:
    """Add ``db`` and its subcommands to the ``bankhub`` parser's subparsers."""
    db = common.Group(subparsers, "db", "database administration")
    grant = db.add(
        "grant-app-role",
        "grant the role the hub runs as what it needs: no UPDATE, DELETE or TRUNCATE on audit_log",
        cmd_db_grant_app_role,
        url_help="an owner's DSN; default: $BANKHUB_DATABASE_URL",
    )
    grant.add_argument("role", help="an existing, non-owner, non-superuser LOGIN role")
