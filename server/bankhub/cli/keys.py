"""``bankhub keys ...``: key files, KEK rotation and retirement, crypto-shredding.

* ``keys init [--file PATH]`` — create a key file (mode 0600) with one active KEK.
* ``keys rotate [--rewrap-only]`` — add a new active KEK to the key file, then re-wrap every
  conversation key under it (message rows are not touched); prints counts. With
  ``--rewrap-only`` no KEK is added: resume an interrupted rotation, or re-wrap after
  making a new KEK active in an HSM/KMS.
* ``keys retire --kek ID`` — remove an old KEK from the key file once nothing uses it.
* ``keys shred --conversation ID`` — crypto-shred one conversation (irreversible); refused
  (exit 1, naming the holds) while an active legal hold covers it.
* ``keys rotate-signing`` — make a new Ed25519 card/notice signing key active; the old one
  is retired but stays listed at ``/v1/signing-keys`` (what it signed still verifies).
* ``keys status`` — the active KEK and how many conversation keys each KEK wraps.

The key file is ``--file`` or ``BANKHUB_KEY_FILE`` (``BANKHUB_KEY_PROVIDER`` for an HSM); the
database ``--database-url``, ``--data-dir`` of a running ``bankhub dev``, or
``BANKHUB_DATABASE_URL`` (see :mod:`bankhub.cli.common`); with a data dir, its ``keys.json`` is the
default key file. Exit codes: 0 done, 1 the operation did not (fully) happen, 2 could not run
(configuration, arguments, database unreachable), with one line on stderr.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from . import common
from .common import CannotRun

__all__ = ["register"]


def cmd_init(args: argparse.Namespace) -> int:
    from ..actions.keys import init_key_file

    path = args.file or common.env_settings().key_file
    if not path:
        raise CannotRun("pass --file PATH or set BANKHUB_KEY_FILE")
    key_file = init_key_file(path)
    print(f"created {key_file.path} (mode 0600) with active KEK {key_file.active_kek_id()}")
    print("keep it off the database host and out of database backups; set BANKHUB_KEY_FILE to it on every node")
    return 0


def cmd_rotate(args: argparse.Namespace) -> int:
    from ..actions.keys import rotate

    if args.batch_size < 1:
        raise CannotRun("--batch-size must be positive")
    provider = common.key_provider(args)
    report = common.with_db(args, lambda db: rotate(db, provider, new_kek=not args.rewrap_only, batch_size=args.batch_size))
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
    from ..actions.keys import KekInUse, retire_kek
    from ..crypto import LocalKeyFile

    provider = common.key_provider(args)
    if not isinstance(provider, LocalKeyFile):
        raise CannotRun("retire works on key files; disable old KEKs in the HSM/KMS itself")
    try:
        common.with_db(args, lambda db: retire_kek(db, provider, args.kek))
    except (KekInUse, KeyError) as exc:
        print(f"bankhub keys retire: not retired: {exc}", file=sys.stderr)
        return 1
    print(f"retired KEK {args.kek}: removed from {provider.path}")
    return 0


def cmd_shred(args: argparse.Namespace) -> int:
    from ..actions.keys import ConversationHeld, shred_conversation

    try:
        outcome = common.with_db(args, lambda db: shred_conversation(db, args.conversation))
    except ConversationHeld as exc:
        # a legal hold covers it: nothing was destroyed; name the holds so the operator knows whom to ask
        print(f"bankhub keys shred: refused: conversation {args.conversation} is under legal hold", file=sys.stderr)
        for hold in exc.holds:
            case = f", case {hold.case_ref}" if hold.case_ref else ""
            print(f"  hold {hold.hold_id}: {hold.name}{case}", file=sys.stderr)
        print("nothing was shredded; two compliance officers must release the hold(s) first", file=sys.stderr)
        return 1
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
    from ..actions.keys import key_status

    provider = common.key_provider(args)
    active, counts, shredded = common.with_db(args, lambda db: key_status(db, provider))
    print(f"active KEK: {active}")
    for kek, n in sorted(counts.items()):
        print(f"  {kek}: {n} conversation key(s){'  (active)' if kek == active else ''}")
    print(f"shredded conversations: {shredded}")
    return 0


def cmd_rotate_signing(args: argparse.Namespace) -> int:
    from ..actions.cards import rotate_signing_key

    provider = common.key_provider(args)
    key_id = common.with_db(args, lambda db: rotate_signing_key(db, provider))
    print(f"new active signing key: {key_id}; the previous one is retired and still listed at /v1/signing-keys")
    print("every node signs with it within a minute")
    return 0


def register(subparsers: Any) -> None:
    """Add ``keys`` and its subcommands to the ``bankhub`` parser's subparsers."""
    keys = common.Group(subparsers, "keys", "encryption at rest: key files, KEK rotation, crypto-shredding")
    keys.add("init", "create a key file (mode 0600) holding one new active KEK", cmd_init, key_file=True, database=False)
    rot = keys.add("rotate", "add a new active KEK and re-wrap every conversation key under it", cmd_rotate, key_file=True)
    rot.add_argument("--rewrap-only", action="store_true", help="add no KEK: re-wrap under the current active one")
    rot.add_argument("--batch-size", type=int, default=500, help="conversation keys per transaction")
    ret = keys.add("retire", "remove an old KEK from the key file once no conversation key uses it", cmd_retire, key_file=True)
    ret.add_argument("--kek", required=True, help="the KEK id to remove")
    shred = keys.add("shred", "crypto-shred one conversation: its messages become unrecoverable", cmd_shred)
    shred.add_argument("--conversation", required=True, help="conversation id")
    keys.add("status", "show the active KEK and how many conversation keys each KEK wraps", cmd_status, key_file=True)
    keys.add(
        "rotate-signing", "make a new card/notice signing key active (the old one stays listed for verification)",
        cmd_rotate_signing, key_file=True,
    )
