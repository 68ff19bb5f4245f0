"""``bankhub audit verify``: check the tamper-evident audit log.

``audit verify`` walks the whole audit chain and exits 0 with a summary line ending in
the head (``SEQ:HEX``, to be anchored outside the database), or 1 naming the first bad
row. ``--expect-head`` (a previously anchored head) also catches a removed tail.
Exit 2 means it could not run (no database found, database unreachable or lost midway, bad
arguments, no audit table), with one line on stderr. The database is found as
:mod:`bankhub.cli.common` says (``--database-url``, ``--data-dir``, ``BANKHUB_DATABASE_URL``, ``./var``).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from . import common

__all__ = ["register", "cmd_audit_verify"]


def cmd_audit_verify(args: argparse.Namespace) -> int:
    import asyncpg

    from ..storage.audit import Head, verify

    dsn = common.database_url(args)
    try:
        expect = Head.parse(args.expect_head) if args.expect_head else None
    except ValueError as exc:
        print(f"bankhub audit verify: {exc}", file=sys.stderr)
        return 2
    if args.batch_size < 1:
        print("bankhub audit verify: --batch-size must be positive", file=sys.stderr)
        return 2

    try:
        report = common.with_connection(dsn, lambda conn: verify(conn, expect_head=expect, batch_size=args.batch_size))
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


def register(subparsers: Any) -> None:
    """Add ``audit`` and its subcommands to the ``bankhub`` parser's subparsers."""
    audit = common.Group(subparsers, "audit", "the tamper-evident audit log")
    ver = audit.add("verify", "re-compute the audit hash chain; exit 1 at the first bad row", cmd_audit_verify)
    ver.add_argument("--expect-head", metavar="SEQ:HEX", help="a head anchored earlier: also detects a removed tail")
    ver.add_argument("--batch-size", type=int, default=1000, help=argparse.SUPPRESS)
