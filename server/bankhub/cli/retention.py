"""``bankhub retention ...``: retention policies, the purge, erasure requests.

* ``retention policies`` — list the policies and the records floor.
* ``retention set --as U --scope kind|role|user --value V --days N`` — ask for a policy (or its
  replacement; ``--days`` at least the records floor): a new or shorter policy is a pending
  request (its id is printed), lengthening an existing one applies at once.
* ``retention unset --as U --policy ID`` — ask for a policy's removal (a pending request).
* ``retention purge [--resume RUN_ID] [--batch-size N] [--max-batches N]`` — run a purge (or
  resume an interrupted one) here, printing one progress line per batch; ``--max-batches``
  stops after that many batches and leaves the run ``interrupted`` (resume it later).
* ``retention erase --as U USERNAME --reason TEXT`` — file a customer's erasure request
  (PIPL art. 47; a pending request).
* ``retention approve`` — refused (exit 1): a second officer approves in the compliance console.

Dual control: ``set``, ``unset`` and ``erase`` act AS a compliance officer (``--as USERNAME``):
the same policy decides as over HTTP, they file the same requests, and the audit rows name
that officer with ``"via": "cli"`` and the operating-system user (``os_user``). Anyone who can
run this command can name any officer, so the SECOND officer's approval is only taken through
the HTTP API by a signed-in officer (the compliance console, ``/compliance/``). The purge acts
as ``system`` (it deletes only what policies already in force make due). Media blobs are removed
through the blob store the settings name (``BANKHUB_MEDIA_*``, as the nodes use); ``purge``
refuses to run (exit 2) when that store does not hold a media item the hub has. The database is found as
:mod:`bankhub.cli.common` says. Exit codes: 0 done, 1 refused or the run did not finish,
2 could not run.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from typing import TYPE_CHECKING, Any

from . import common
from .common import CannotRun
from .holds import _as_officer, cli_origin

if TYPE_CHECKING:
    from ..storage.retention import RequestRow

__all__ = ["register"]


def _settings(args: argparse.Namespace) -> Any:
    return dataclasses.replace(common.env_settings(), database_url=common.database_url(args))


def cmd_policies(args: argparse.Namespace) -> int:
    from ..actions.retention import list_policies

    settings = _settings(args)
    rows = common.with_db(args, lambda db: list_policies(db, None, None, 10_000))
    print(f"records floor: {settings.retention_floor_days} days")
    if not rows:
        print("no policies: every conversation is kept")
    for r in rows:
        value = r.username if r.scope == "user" and r.username else r.value
        print(f"{r.id}  {r.scope:<5} {value:<24} {r.days} days  (set by {r.created_by}, {r.created_at:%Y-%m-%d})")
    return 0


APPROVE_REFUSED = (
    "a retention request is approved by a second compliance officer signed in to the compliance console "
    "(/compliance/, or POST /v1/compliance/retention/requests/{request_id}/approve); the command line cannot approve"
)


def _pending(request: RequestRow) -> None:
    print(f"request {request.id}: {request.kind} pending, filed by {request.requested_by}")
    print(
        "it takes effect only when a second compliance officer approves it in the compliance console "
        f"(/compliance/, or POST /v1/compliance/retention/requests/{request.id}/approve)"
    )


def cmd_set(args: argparse.Namespace) -> int:
    from ..actions.retention import set_policy
    from ..storage.retention import RequestRow

    settings = _settings(args)
    row = _as_officer(
        args, lambda db, user: set_policy(db, settings, user, args.scope, args.value, args.days, via=cli_origin())
    )
    if isinstance(row, RequestRow):
        _pending(row)
    else:
        print(f"policy {row.id}: {row.scope} {args.value} keeps {row.days} days (lengthened: in force now)")
    return 0


def cmd_unset(args: argparse.Namespace) -> int:
    from ..actions.retention import remove_policy

    asked = _as_officer(args, lambda db, user: remove_policy(db, user, args.policy, via=cli_origin()))
    assert asked is not None  # an officer's removal is a request
    _pending(asked)
    return 0


def cmd_approve(args: argparse.Namespace) -> int:
    """Refused: the command line names its officer, so it cannot be the second of two."""
    print(APPROVE_REFUSED, file=sys.stderr)
    return 1


def cmd_purge(args: argparse.Namespace) -> int:
    from ..actions.retention import resume_purge, run_purge, start_purge
    from ..blobs import make_blob_store
    from ..storage.retention import BatchOutcome, RetentionStore, RunRow

    if args.batch_size is not None and not 1 <= args.batch_size <= 10_000:
        raise CannotRun("--batch-size is 1 to 10000")
    if args.max_batches is not None and args.max_batches < 1:
        raise CannotRun("--max-batches must be positive")
    settings = _settings(args)
    try:
        blobs = make_blob_store(settings)
    except ValueError as exc:
        raise CannotRun(str(exc)) from None

    def progress(run: RunRow, batch: BatchOutcome) -> None:
        print(
            f"batch {run.batches}: scanned {batch.scanned}, deleted {batch.deleted_messages} message(s) and "
            f"{batch.deleted_media} media, refused {batch.refused_held} held; total deleted {run.deleted_messages}",
            flush=True,
        )

    async def go(db: Any) -> RunRow:
        try:
            # a CLI with other BANKHUB_MEDIA_* settings than the nodes' would "delete" blobs its
            # store never had and dequeue them, orphaning the real ones: check it holds the hub's media
            sample = await RetentionStore(db).sample_media_blob()
            if sample is not None and not await blobs.exists(sample):
                raise CannotRun(
                    "the blob store named by BANKHUB_MEDIA_* does not hold the hub's media: run with the nodes' media settings"
                )
            if args.resume:
                run = await resume_purge(db, settings, None, args.resume, args.batch_size)
            else:
                run = await start_purge(db, settings, None, args.batch_size)
            print(f"purge run {run.id}: cutoffs measured from {run.now_at.isoformat()}", flush=True)
            return await run_purge(
                db, blobs, run, on_batch=progress, max_batches=args.max_batches, floor_days=settings.retention_floor_days
            )
        finally:
            await blobs.close()

    final = common.with_db(args, go)
    print(
        f"purge run {final.id} {final.state}: scanned {final.scanned}, deleted {final.deleted_messages} message(s) "
        f"and {final.deleted_media} media, refused {final.refused_held} held, in {final.batches} batch(es)"
    )
    if final.state != "done":
        print(f"resume it: bankhub retention purge --resume {final.id}", file=sys.stderr)
        return 1
    return 0


def cmd_erase(args: argparse.Namespace) -> int:
    from ..actions.retention import request_erasure

    asked = _as_officer(args, lambda db, user: request_erasure(db, user, args.username, args.reason, via=cli_origin()))
    _pending(asked)
    return 0


def register(subparsers: Any) -> None:
    """Add ``retention`` and its subcommands to the ``bankhub`` parser's subparsers."""
    group = common.Group(subparsers, "retention", "retention policies, the purge, erasure requests")
    group.add("policies", "list the retention policies and the records floor", cmd_policies)

    def officer(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
        parser.add_argument("--as", dest="as_user", required=True, metavar="USERNAME", help="the compliance officer asking")
        return parser

    s = officer(group.add("set", "ask for a retention policy (a second officer approves a new or shorter one)", cmd_set))
    s.add_argument("--scope", required=True, choices=("kind", "role", "user"))
    s.add_argument("--value", required=True, help="a kind (direct, group, service), a role, or a username")
    s.add_argument("--days", required=True, type=int, help="days to keep (at least the records floor)")
    u = officer(group.add("unset", "ask for a retention policy's removal (a second officer approves)", cmd_unset))
    u.add_argument("--policy", required=True, help="the policy id")
    p = group.add("purge", "delete what is past its retention and not held, in batches", cmd_purge)
    p.add_argument("--resume", metavar="RUN_ID", help="resume this interrupted run from its cursor")
    p.add_argument("--batch-size", type=int, default=None, help="messages per batch (default BANKHUB_RETENTION_PURGE_BATCH)")
    p.add_argument("--max-batches", type=int, default=None, help="stop after this many batches (the run stays resumable)")
    e = officer(group.add("erase", "file a customer's erasure request (PIPL art. 47; a second officer approves)", cmd_erase))
    e.add_argument("username")
    e.add_argument("--reason", required=True, help="why (recorded in the audit log)")
    # kept so that it answers with where to approve instead of "invalid choice"
    appr = group.add("approve", "refused: a second officer approves a request in the compliance console", cmd_approve)
    appr.add_argument("--as", dest="as_user", metavar="USERNAME", help=argparse.SUPPRESS)
    appr.add_argument("--request", help=argparse.SUPPRESS)
