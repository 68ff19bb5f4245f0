"""``bankhub holds ...``: legal holds from the command line (docs/compliance.md, "Legal hold").

Every subcommand acts AS a compliance officer (``--as USERNAME``): the same policy decides as
over HTTP and the audit rows name that officer as the actor, with ``"via": "cli"`` and the
operating-system user (``os_user``) in their details.

Dual control is not available here: anyone who can run this command can name any officer, so
the SECOND officer's decision — approving a release — is only taken through the HTTP API by a
signed-in officer (the compliance console, ``/compliance/``). ``holds approve`` refuses and
says so.

* ``holds list --as U [--state active|release_pending|released] [--limit N]`` — newest first;
* ``holds place --as U --name NAME [--case-ref REF] [--custodian USERNAME] [--conversation ID]
  [--from RFC3339] [--to RFC3339]`` — prints the new hold's id;
* ``holds release --as U --hold ID --reason TEXT`` — ask for a release (the first officer);
* ``holds approve`` — refused (exit 1): a second officer approves in the compliance console;
* ``holds reject --as U --hold ID`` — reject or withdraw a requested release.

Database as for every command (:mod:`bankhub.cli.common`). Exit codes: 0 done, 1 refused
(not an officer, an officer approving their own request, an unknown custodian ...), 2 could
not run (arguments, database), with one line on stderr.
"""

from __future__ import annotations

import argparse
import datetime as dt
import getpass
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from . import common
from .common import CannotRun

if TYPE_CHECKING:
    from ..actions.holds import HoldView
    from ..models import User
    from ..storage.db import Database

__all__ = ["register", "cli_origin"]

T = TypeVar("T")


def cli_origin() -> dict[str, str]:
    """What the audit details of a command-line action add: ``{"via": "cli", "os_user": ...}``
    (the operating-system user who ran it; ``?`` when there is none to name)."""
    try:
        who = getpass.getuser()
    except (OSError, KeyError, ImportError):
        who = "?"
    return {"via": "cli", "os_user": who[:64]}


def _instant(value: str | None, flag: str) -> dt.datetime | None:
    if value is None:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        raise CannotRun(f"{flag} must be an RFC 3339 time, e.g. 2026-01-31T00:00:00+08:00") from None
    if parsed.tzinfo is None:
        raise CannotRun(f"{flag} needs an offset (Z or +08:00)")
    return parsed


def _as_officer(args: argparse.Namespace, fn: Callable[[Database, User], Awaitable[T]]) -> T:
    """Run ``fn`` with the user ``--as`` names (the policy decides whether they may)."""
    from ..actions.errors import ActionError
    from ..storage.users import UserStore

    async def run(db: Database) -> T:
        user = await UserStore(db).by_username(args.as_user)
        if user is None:
            raise ActionError("forbidden", f"no compliance officer {args.as_user!r}")
        return await fn(db, user)

    return common.with_db(args, run)


def _show(hold: HoldView) -> None:
    scope = []
    if hold.custodian is not None:
        scope.append(f"custodian {hold.custodian.username}")
    if hold.conversation_id is not None:
        scope.append(f"conversation {hold.conversation_id}")
    if hold.from_ is not None:
        scope.append(f"from {hold.from_.isoformat()}")
    if hold.to is not None:
        scope.append(f"to {hold.to.isoformat()}")
    case = f" [{hold.case_ref}]" if hold.case_ref else ""
    print(f"{hold.hold_id}  {hold.state:<15}  {hold.name}{case}: {', '.join(scope)}")
    if hold.release_requested_by is not None:
        print(f"    release requested by {hold.release_requested_by}: {hold.release_reason}")
    if hold.released_by is not None and hold.released_at is not None:
        print(f"    released by {hold.released_by} at {hold.released_at.isoformat()}")


def cmd_list(args: argparse.Namespace) -> int:
    from ..actions import holds

    if not 1 <= args.limit <= 200:
        raise CannotRun("--limit must be within 1..200")
    rows = _as_officer(args, lambda db, user: holds.page(db, user, state=args.state, after=None, limit=args.limit))
    for hold, _ in rows:
        _show(hold)
    if not rows:
        print("no holds")
    return 0


def cmd_place(args: argparse.Namespace) -> int:
    from ..actions import holds

    start, end = _instant(args.from_, "--from"), _instant(args.to, "--to")
    hold = _as_officer(
        args,
        lambda db, user: holds.place(
            db, user, name=args.name, case_ref=args.case_ref, custodian=args.custodian,
            conversation_id=args.conversation, from_at=start, to_at=end, via=cli_origin(),
        ),
    )
    print("hold placed (in force from now on; purge and shred refuse what it covers):")
    _show(hold)
    return 0


def cmd_release(args: argparse.Namespace) -> int:
    from ..actions import holds

    hold = _as_officer(args, lambda db, user: holds.request_release(db, user, args.hold, args.reason, via=cli_origin()))
    print("release requested: the hold stays active until a second compliance officer approves it in the compliance console")
    _show(hold)
    return 0


APPROVE_REFUSED = (
    "a release is approved by a second compliance officer signed in to the compliance console "
    "(/compliance/, or POST /v1/compliance/holds/{hold_id}/release/approve); the command line cannot approve"
)


def cmd_approve(args: argparse.Namespace) -> int:
    """Refused: the command line names its officer, so it cannot be the second of two."""
    print(APPROVE_REFUSED, file=sys.stderr)
    return 1


def cmd_reject(args: argparse.Namespace) -> int:
    from ..actions import holds

    hold = _as_officer(args, lambda db, user: holds.reject_release(db, user, args.hold, via=cli_origin()))
    print("release rejected: the hold is active")
    _show(hold)
    return 0


def register(subparsers: Any) -> None:
    """Add ``holds`` and its subcommands to the ``bankhub`` parser's subparsers."""
    group = common.Group(subparsers, "holds", "legal holds: place, list, release under dual control")

    def officer(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
        parser.add_argument("--as", dest="as_user", required=True, metavar="USERNAME", help="the compliance officer acting")
        return parser

    lst = officer(group.add("list", "list legal holds, newest first", cmd_list))
    lst.add_argument("--state", choices=("active", "release_pending", "released"), help="only holds in this state")
    lst.add_argument("--limit", type=int, default=50, help="at most this many (1-200)")
    place = officer(group.add("place", "place a legal hold by custodian, conversation and date range", cmd_place))
    place.add_argument("--name", required=True, help="1-120 characters")
    place.add_argument("--case-ref", help="the case reference (at most 64 characters)")
    place.add_argument("--custodian", help="a username: every conversation they were ever a member of")
    place.add_argument("--conversation", help="a conversation id")
    place.add_argument("--from", dest="from_", metavar="TIME", help="RFC 3339: messages sent at or after it")
    place.add_argument("--to", metavar="TIME", help="RFC 3339: messages sent before it")
    rel = officer(group.add("release", "ask for a hold's release (a second officer approves)", cmd_release))
    rel.add_argument("--hold", required=True, help="hold id")
    rel.add_argument("--reason", required=True, help="why the hold may end")
    officer(group.add("reject", "reject or withdraw a requested release: the hold stays active", cmd_reject)).add_argument(
        "--hold", required=True, help="hold id"
    )
    # kept so that it answers with where to approve instead of "invalid choice"
    appr = group.add("approve", "refused: a second officer approves a release in the compliance console", cmd_approve)
    appr.add_argument("--as", dest="as_user", metavar="USERNAME", help=argparse.SUPPRESS)
    appr.add_argument("--hold", help=argparse.SUPPRESS)
