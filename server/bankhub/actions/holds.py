"""Legal holds: place, list, read, and release under dual control.

* :func:`place` — one transaction takes the holds lock EXCLUSIVE
  (:func:`bankhub.storage.holds.lock_holds_exclusive_txn`), re-reads the officer, resolves
  the custodian and the conversation, inserts the hold and appends ``hold.placed`` (the
  scope in its details). A purge batch, erasure or shred in flight (they hold the lock
  shared) finishes first; every later one sees the hold. Data destroyed before the hold
  committed is gone — a hold applies from the moment its transaction commits.
* :func:`request_release` — officer A asks (``hold.release_requested``, a reason required);
  the hold stays active (``release_pending``).
* :func:`approve_release` — a DIFFERENT active compliance officer B approves
  (``hold.released``); A approving their own request is ``403 forbidden``. Only the HTTP
  API (a signed-in officer) calls it: ``bankhub holds`` acts "as" an officer named on the
  command line, so it may place, list, request and reject, never approve — one person with
  database access must not be both officers.
* :func:`reject_release` — any officer, A included (a withdrawal), returns the hold to
  active (``hold.release_rejected``).

Every decision locks the hold row and share-locks the officers involved in the deciding
transaction, and decides on them as they are then (:mod:`bankhub.policy`). Holds are never
deleted. The audit row is the last write of each transaction.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping
from typing import Any

import msgspec

from .. import policy
from ..compliance.holds import HoldInvalid, HoldScope, HoldState, hold_state, validate_hold, validate_release_reason
from ..hub import Hub
from ..models import User
from ..storage.db import Database
from ..storage.holds import HoldRow, HoldStore, lock_holds_exclusive_txn
from ..storage.users import UserStore
from . import audit
from .errors import ActionError, require
from .sensitive import refuse_sensitive

__all__ = [
    "HoldView",
    "HoldCustodian",
    "HoldKey",
    "view",
    "place",
    "get",
    "page",
    "request_release",
    "approve_release",
    "reject_release",
]

HoldKey = tuple[dt.datetime, str]
"""The list's sort key (created_at, hold id), newest first."""


class HoldCustodian(msgspec.Struct, frozen=True):
    user_id: str
    username: str


class HoldView(msgspec.Struct, frozen=True):
    """A hold as the API shows it; people are named by username."""

    hold_id: str
    name: str
    case_ref: str | None
    custodian: HoldCustodian | None
    conversation_id: str | None
    from_: dt.datetime | None = msgspec.field(name="from")
    to: dt.datetime | None
    state: HoldState
    created_by: str
    created_at: dt.datetime
    release_requested_by: str | None
    release_requested_at: dt.datetime | None
    release_reason: str | None
    released_by: str | None
    released_at: dt.datetime | None


def view(row: HoldRow) -> HoldView:
    custodian = None
    if row.custodian_id is not None and row.custodian_username is not None:
        custodian = HoldCustodian(user_id=row.custodian_id, username=row.custodian_username)
    return HoldView(
        hold_id=row.id,
        name=row.name,
        case_ref=row.case_ref,
        custodian=custodian,
        conversation_id=row.conversation_id,
        from_=row.from_at,
        to=row.to_at,
        state=hold_state(released=row.released_at is not None, release_requested=row.release_requested_by is not None),
        created_by=row.created_by_username,
        created_at=row.created_at,
        release_requested_by=row.release_requested_by_username,
        release_requested_at=row.release_requested_at,
        release_reason=row.release_reason,
        released_by=row.released_by_username,
        released_at=row.released_at,
    )


def _iso(value: dt.datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _scope_details(row: HoldRow) -> dict[str, Any]:
    return {
        "name": row.name,
        "case_ref": row.case_ref,
        "custodian": row.custodian_username,
        "custodian_id": row.custodian_id,
        "conversation_id": row.conversation_id,
        "from": _iso(row.from_at),
        "to": _iso(row.to_at),
    }


def _db(hub: Hub | Database) -> Database:
    """The database: every action here also runs without a hub (``bankhub holds``)."""
    return hub if isinstance(hub, Database) else hub.db


def _target(hold_id: str) -> str:
    return f"hold:{hold_id}"


def _invalid(exc: HoldInvalid) -> ActionError:
    return ActionError("invalid_request", str(exc))


async def place(
    hub: Hub | Database,
    actor: User,
    *,
    name: str,
    case_ref: str | None = None,
    custodian: str | None = None,
    conversation_id: str | None = None,
    from_at: dt.datetime | None = None,
    to_at: dt.datetime | None = None,
    ip: str | None = None,
    via: Mapping[str, str] | None = None,
) -> HoldView:
    """Place a hold (compliance officers). ``custodian`` is a username (unknown: ``404
    not_found``), ``conversation_id`` a conversation id (unknown: ``404``). Invalid input is
    ``400 invalid_request`` (see :func:`bankhub.compliance.holds.validate_hold`)."""
    require(policy.may_place_hold(actor))
    conv_key: str | None = None
    if conversation_id is not None:
        try:
            conv_key = str(uuid.UUID(conversation_id))
        except ValueError:
            raise ActionError("invalid_request", "conversation_id must be a conversation id (a UUID)") from None
    try:
        # the custodian's id is not known yet: validate the shape with a stand-in
        validate_hold(name, case_ref, HoldScope("?" if custodian is not None else None, conv_key, from_at, to_at))
    except HoldInvalid as exc:
        raise _invalid(exc) from None
    refuse_sensitive(name=name, case_ref=case_ref)  # kept in the audit row and every list of holds
    async with _db(hub).transaction("legal_hold_place") as conn:
        # first, before any row lock: every purge batch, erasure and shred in flight ends
        # before this point, and none can start until this transaction ends
        await lock_holds_exclusive_txn(conn)
        # the officer as they are now (disabled or moved out of compliance meanwhile: refused)
        now = (await UserStore.lock_shared(conn, [actor.id])).get(actor.id, actor)
        require(policy.may_place_hold(now))
        custodian_id: str | None = None
        if custodian is not None:
            found = await HoldStore.user_by_username_txn(conn, custodian)
            if found is None:
                raise ActionError("not_found", f"no user {custodian!r}")
            custodian_id = found[0]
        if conv_key is not None and not await HoldStore.conversation_exists_txn(conn, conv_key):
            raise ActionError("not_found", "no such conversation")
        row = await HoldStore.insert_txn(
            conn,
            name=name,
            case_ref=case_ref,
            custodian_id=custodian_id,
            conversation_id=conv_key,
            from_at=from_at,
            to_at=to_at,
            created_by=actor.id,
        )
        await audit.record(
            hub, actor=now, action=audit.HOLD_PLACED, target=_target(row.id), ip=ip, details={**_scope_details(row), **(via or {})},
            conn=conn,
        )
    return view(row)


async def get(hub: Hub | Database, actor: User, hold_id: str) -> HoldView:
    """One hold (compliance officers); ``404 not_found`` if there is none with that id."""
    require(policy.may_view_holds(actor))
    row = await HoldStore(_db(hub)).get(hold_id)
    if row is None:
        raise ActionError("not_found", "no such hold")
    return view(row)


async def page(
    hub: Hub | Database, actor: User, *, state: HoldState | None, after: HoldKey | None, limit: int
) -> list[tuple[HoldView, HoldKey]]:
    """Holds newest first, of ``state`` if given: up to ``limit`` after ``after``, each with its key."""
    require(policy.may_view_holds(actor))
    rows = await HoldStore(_db(hub)).page(state, after, limit)
    return [(view(r), (r.created_at, r.id)) for r in rows]


async def _decide(
    hub: Hub | Database, actor: User, hold_id: str, step: str, *, reason: str | None, ip: str | None, via: Mapping[str, str] | None = None
) -> HoldView:
    require(policy.may_view_holds(actor))
    # a release request expires (BANKHUB_HOLD_RELEASE_TTL_HOURS); approving needs the hub (HTTP)
    ttl = None if isinstance(hub, Database) else dt.timedelta(hours=hub.settings.hold_release_ttl_hours)
    async with _db(hub).transaction(f"legal_hold_{step}") as conn:
        # the hold row locked: a concurrent decision on it waits, then sees this one's outcome
        row = await HoldStore.lock_txn(conn, hold_id)
        if row is None:
            raise ActionError("not_found", "no such hold")
        # every officer involved as they are now, share-locked until this commits: one
        # disabled or moved out of compliance before this point is seen here
        ids = [actor.id] + ([row.release_requested_by] if row.release_requested_by else [])
        users = await UserStore.lock_shared(conn, ids)
        decider = users.get(actor.id, actor)
        released, pending = row.released_at is not None, row.release_requested_by is not None
        details: dict[str, Any] = {**_scope_details(row), **(via or {})}
        if step == "release_request":
            require(policy.may_request_hold_release(decider, released=released, release_pending=pending))
            assert reason is not None
            done = await HoldStore.request_release_txn(conn, row.id, decider.id, reason)
            action = audit.HOLD_RELEASE_REQUESTED
        elif step == "release_approve":
            requester = users.get(row.release_requested_by) if row.release_requested_by else None
            asked = row.release_requested_at
            expired = ttl is not None and asked is not None and asked < dt.datetime.now(dt.timezone.utc) - ttl
            require(policy.may_approve_hold_release(decider, requester, released=released, release_pending=pending, expired=expired))
            done = await HoldStore.release_txn(conn, row.id, decider.id)
            action, reason = audit.HOLD_RELEASED, row.release_reason
            details["requested_by"] = row.release_requested_by_username
        else:
            require(policy.may_reject_hold_release(decider, released=released, release_pending=pending))
            done = await HoldStore.clear_release_request_txn(conn, row.id)
            action, reason = audit.HOLD_RELEASE_REJECTED, row.release_reason
            details["requested_by"] = row.release_requested_by_username
            details["withdrawn"] = row.release_requested_by == decider.id
        await audit.record(hub, actor=decider, action=action, target=_target(row.id), reason=reason, ip=ip, details=details, conn=conn)
    return view(done)


async def request_release(
    hub: Hub | Database, actor: User, hold_id: str, reason: str, *, ip: str | None = None, via: Mapping[str, str] | None = None
) -> HoldView:
    """Officer A asks for the release of an active hold (``release_pending``; still active).
    ``reason`` is required; ``409 conflict`` if released already or a request is waiting."""
    require(policy.may_view_holds(actor))  # a non-officer hears 403 before any word on the body
    try:
        validate_release_reason(reason)
    except HoldInvalid as exc:
        raise _invalid(exc) from None
    refuse_sensitive(reason=reason)  # kept in the audit rows of the request and its decision
    return await _decide(hub, actor, hold_id, "release_request", reason=reason, ip=ip, via=via)


async def approve_release(hub: Hub | Database, actor: User, hold_id: str, *, ip: str | None = None) -> HoldView:
    """A second active compliance officer approves a waiting release: the hold is released
    and protects nothing from then on. The requester: ``403 forbidden``; nothing waiting or
    a requester no longer an active officer, or a request older than
    ``BANKHUB_HOLD_RELEASE_TTL_HOURS``: ``409 conflict``."""
    return await _decide(hub, actor, hold_id, "release_approve", reason=None, ip=ip)


async def reject_release(
    hub: Hub | Database, actor: User, hold_id: str, *, ip: str | None = None, via: Mapping[str, str] | None = None
) -> HoldView:
    """Any active compliance officer (the requester too: a withdrawal) rejects a waiting
    release; the hold is active again. Nothing waiting: ``409 conflict``."""
    return await _decide(hub, actor, hold_id, "release_reject", reason=None, ip=ip, via=via)
