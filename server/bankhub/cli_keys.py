"""``bankhub keys ...``: key files, KEK rotation and retirement, crypto-shredding.

* ``keys init [--file PATH]`` — create a key file (mode 0600) with one active KEK.
* ``keys rotate [--rewrap-only]`` — add a new active KEK to the key file, then re-wrap every
  conversation key under it (message rows are not touched); prints counts. With
  ``--rewrap-only`` no KEK is added: resume an interrupted rotation, or re-wrap after
  making a new KEK active in an HSM/KMS.
* ``keys retire --kek ID`` — remove an old KEK from the key file once nothing uses it.
* ``keys shred --conversation ID`` — crypto-shred one conversation (irreversible).
* ``keys status`` — the active KEK and how many conversation keys each KEK wraps.

The key file is ``--file`` or ``BANKHUB_KEY_FILE`` (``BANKHUB_KEY_PROVIDER`` for an HSM); the
database ``--database-url``, ``--data-dir`` of a running ``bankhub dev``, or
``BANKHUB_DATABASE_URL`` (see :mod:`bankhub.cli_db`); with a data dir, its ``keys.json`` is the
default key file. Exit codes: 0 done, 1 the operation did not (fully) happen, 2 could not run
(configuration, arguments, database unreachable), with one line on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from . import cli_db

__all__ = ["register"]

T = TypeVar("T")


class _Fail(Exception):
    """Print to stderr and exit 2."""


def _dsn(args: argparse.Namespace) -> str:
    return cli_db.database_url(args)


def _provider(args: argparse.Namespace) -> Any:
    from .crypto import provider_from_settings
    from .settings import NO_KEY_PROVIDER, Settings

    env = Settings.from_env()
    key_file = args.file or env.key_file or (None if env.key_provider else cli_db.dev_key_file(args))
    provider = provider_from_settings(key_file, None if args.file else env.key_provider)
    if provider is None:
        raise _Fail(NO_KEY_PROVIDER)
    return provider


def _with_db(dsn: str, fn: Callable[[Any], Awaitable[T]]) -> T:
    async def run() -> T:
        db = await cli_db.open_database(dsn)
        try:
            return await fn(db)
        finally:
            await db.close()

    return asyncio.run(run())


def _guard(name: str, fn: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        from .crypto import KeyFileError

        try:
            return fn(args)
        except (_Fail, KeyFileError) as exc:
            print(f"bankhub keys {name}: {exc}", file=sys.stderr)
            return 2

    return cli_db.guard(f"keys {name}", run)


def cmd_init(args: argparse.Namespace) -> int:
    from .actions.keys import init_key_file
    from .settings import Settings

    path = args.file or Settings.from_env().key_file
    if not path:
        raise _Fail("pass --file PATH or set BANKHUB_KEY_FILE")
    key_file = init_key_file(path)
    print(f"created {key_file.path} (mode 0600) with active KEK {key_file.active_kek_id()}")
    print("keep it off the database host and out of database backups; set BANKHUB_KEY_FILE to it on every node")
    return 0


def cmd_rotate(args: argparse.Namespace) -> int:
    from .actions.keys import rotate

    if args.batch_size < 1:
        raise _Fail("--batch-size must be positive")
    provider = _provider(args)
    dsn = _dsn(args)
    report = _with_db(dsn, lambda db: rotate(db, provider, new_kek=not args.rewrap_only, batch_size=args.batch_size))
    print(f"{'new active' if report.added_kek else 'active'} KEK: {report.kek_id}")
    print(f"re-wrapped {report.rewrapped} conversation key(s) in {report.passes} pass(es); message rows untouched")
    print(f"conversation keys under {report.kek_id}: {report.under_active}; shredded conversations skipped: {report.shredded}")
    if report.remaining:
        print("still under other KEKs: " + ", ".join(f"{k}: {n}" for k, n in sorted(report.remaining.items())))
    else:
        print("still under other KEKs: none (older KEKs can be retired: bankhub keys retire --kek ID)")
    for conv, kek, error in report.failed:
        print(f"FAILED conversation {conv} (KEK {kek}): {error}", file=sys.stderr)
    return 0 if report.complete else 1


def cmd_retire(args: argparse.Namespace) -> int:
    from .actions.keys import KekInUse, retire_kek
    from .crypto import LocalKeyFile

    provider = _provider(args)
    if not isinstance(provider, LocalKeyFile):
        raise _Fail("retire works on key files; disable old KEKs in the HSM/KMS itself")
    try:
        _with_db(_dsn(args), lambda db: retire_kek(db, provider, args.kek))
    except (KekInUse, KeyError) as exc:
        print(f"bankhub keys retire: not retired: {exc}", file=sys.stderr)
        return 1
    print(f"retired KEK {args.kek}: removed from {provider.path}")
    return 0


def cmd_shred(args: argparse.Namespace) -> int:
    from .actions.keys import shred_conversation

    outcome = _with_db(_dsn(args), lambda db: shred_conversation(db, args.conversation))
    if outcome == "not_found":
        print(f"bankhub keys shred: no conversation {args.conversation}", file=sys.stderr)
        return 1
    if outcome == "already_shredded":
        print(f"conversation {args.conversation} was already shredded")
        return 0
    print(f"conversation {args.conversation} shredded: its key is destroyed, its messages are unrecoverable "
          "and it accepts no new ones")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from .actions.keys import key_status

    provider = _provider(args)
    active, counts, shredded = _with_db(_dsn(args), lambda db: key_status(db, provider))
    print(f"active KEK: {active}")
    for kek, n in sorted(counts.items()):
        print(f"  {kek}: {n} conversation key(s){'  (active)' if kek == active else ''}")
    print(f"shredded conversations: {shredded}")
    return 0


def register(subparsers: Any) -> None:
    """Add ``keys`` and its subcommands to the ``bankhub`` parser's subparsers."""
    keys = subparsers.add_parser("keys", help="encryption at rest: key files, KEK rotation, crypto-shredding")
    sub = keys.add_subparsers(dest="keys_command", required=True)

    def add(name: str, help: str, fn: Callable[[argparse.Namespace], int], *, file: bool = True, db: bool = True) -> Any:
        p = sub.add_parser(name, help=help)
        if file:
            p.add_argument("--file", help="key file (default: $BANKHUB_KEY_FILE)")
        if db:
            cli_db.add_arguments(p)
        p.set_defaults(func=_guard(name, fn))
        return p

    add("init", "create a key file (mode 0600) holding one new active KEK", cmd_init, db=False)
    rot = add("rotate", "add a new active KEK and re-wrap every conversation key under it", cmd_rotate)
    rot.add_argument("--rewrap-only", action="store_true", help="add no KEK: re-wrap under the current active one")
    rot.add_argument("--batch-size", type=int, default=500, help="conversation keys per transaction")
    ret = add("retire", "remove an old KEK from the key file once no conversation key uses it", cmd_retire)
    ret.add_argument("--kek", required=True, help="the KEK id to remove")
    shred = add("shred", "crypto-shred one conversation: its messages become unrecoverable", cmd_shred, file=False)
    shred.add_argument("--conversation", required=True, help="conversation id")
    add("status", "show the active KEK and how many conversation keys each KEK wraps", cmd_status)
