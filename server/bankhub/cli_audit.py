"""``bankhub audit verify`` and ``bankhub db grant-app-role``.

``audit verify`` walks the whole audit chain and exits 0 with a summary line ending in
the head (``SEQ:HEX``, to be anchored outside the database), or 1 naming the first bad
row. ``--expect-head`` (a previously anchored head) also catches a removed tail.
Exit 2 means it could not run (no database found, database unreachable or lost midway, bad
arguments, no audit table), with one line on stderr. The database is found as
:mod:`bankhub.cli_db` says (``--database-url``, ``--data-dir``, ``BANKHUB_DATABASE_URL``, ``./var``).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from . import cli_db

__all__ = ["register"]


def _dsn(args: argparse.Namespace) -> str:
    return cli_db.database_url(args)


def cmd_audit_verify(args: argparse.Namespace) -> int:
    import asyncpg

    from .storage.audit import Head, VerifyReport, verify

    dsn = _dsn(args)
    try:
        expect = Head.parse(args.expect_head) if args.expect_head else None
    except ValueError as exc:
        print(f"bankhub audit verify: {exc}", file=sys.stderr)
        return 2
    if args.batch_size < 1:
        print("bankhub audit verify: --batch-size must be positive", file=sys.stderr)
        return 2

    async def run() -> VerifyReport:
        conn = await cli_db.connect(dsn)
        try:
            return await verify(conn, expect_head=expect, batch_size=args.batch_size)
        finally:
            await conn.close()

    try:
        report = asyncio.run(run())
    except asyncpg.exceptions.UndefinedTableError:
        print("bankhub audit verify: no audit_log table (run `bankhub migrate`)", file=sys.stderr)
        return 2
    if report.problem is None:
        anchored = f"; anchored head {expect.seq} matches" if expect is not None and expect.seq else ""
        print(f"audit log intact: {report.rows} rows verified{anchored}; head {report.head}")
        return 0
    print(f"audit log BROKEN at {report.problem}")
    print(f"last good row: {report.head} ({report.rows} rows verified before the problem)")
    return 1


def cmd_db_grant_app_role(args: argparse.Namespace) -> int:
    import asyncpg

    from .storage.roles import AppRoleError, GrantResult, grant_app_role

    dsn = _dsn(args)

    async def run() -> GrantResult:
        conn = await cli_db.connect(dsn)
        try:
            return await grant_app_role(conn, args.role)
        finally:
            await conn.close()

    try:
        result = asyncio.run(run())
    except (AppRoleError, asyncpg.exceptions.InsufficientPrivilegeError) as exc:
        print(f"bankhub db grant-app-role: {exc}", file=sys.stderr)
        return 2
    print(
        f"granted {result.role}: read/write {len(result.read_write)} table(s); "
        f"SELECT, INSERT only (no UPDATE, DELETE, TRUNCATE) on {', '.join(result.append_only)}; "
        f"SELECT only on {', '.join(result.read_only) or '-'}"
    )
    return 0


def register(subparsers: Any) -> None:
    """Add the ``audit`` and ``db`` commands to ``bankhub``'s sub-command parser."""
    audit = subparsers.add_parser("audit", help="the tamper-evident audit log")
    audit_sub = audit.add_subparsers(dest="audit_command", required=True)
    ver = audit_sub.add_parser("verify", help="re-compute the audit hash chain; exit 1 at the first bad row")
    cli_db.add_arguments(ver)
    ver.add_argument("--expect-head", metavar="SEQ:HEX", help="a head anchored earlier: also detects a removed tail")
    ver.add_argument("--batch-size", type=int, default=1000, help=argparse.SUPPRESS)
    ver.set_defaults(func=cli_db.guard("audit verify", cmd_audit_verify))

    db = subparsers.add_parser("db", help="database administration")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    grant = db_sub.add_parser(
        "grant-app-role",
        help="grant the role the hub runs as what it needs: no UPDATE, DELETE or TRUNCATE on audit_log",
    )
    grant.add_argument("role", help="an existing, non-owner, non-superuser LOGIN role")
    cli_db.add_arguments(grant, url_help="an owner's DSN; default: $BANKHUB_DATABASE_URL")
    grant.set_defaults(func=cli_db.guard("db grant-app-role", cmd_db_grant_app_role))
