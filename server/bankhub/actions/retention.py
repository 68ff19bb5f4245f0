"""Retention: policies, the purge, erasure requests (docs/compliance.md, "Retention").

Every entry point is for active compliance officers (:func:`bankhub.policy.may_manage_retention`)
and is audited. They run against a :class:`~bankhub.storage.db.Database` and a
:class:`~bankhub.blobs.BlobStore` (not a hub), so ``bankhub retention ...`` runs them without
a node, and a node runs them for the HTTP API and its periodic purge.

**Dual control.** What can make records go sooner — a policy that is new or shorter than the
one it replaces, the removal of a policy, an erasure — is a *request* when an officer asks
for it (:func:`set_policy`, :func:`remove_policy`, :func:`request_erasure`): it takes effect
only when a second active compliance officer approves it (:func:`approve_request`) within
``BANKHUB_RETENTION_REQUEST_TTL_HOURS``; any officer may reject it, the requester too (a
withdrawal). Lengthening an existing policy applies at once. ``bankhub retention set``,
``unset`` and ``erase`` file the same requests AS an officer (``--as``; ``via`` adds
``{"via": "cli", "os_user": ...}`` to the audit details): the approval is only taken over
HTTP by a signed-in officer. ``actor`` None (the hub itself, audited as ``system``) applies
directly; no command passes it.

**The purge** (:func:`start_purge`, :func:`resume_purge`, :func:`run_purge`) walks the
conversations in id order, a batch of up to ``batch_size`` due messages per transaction
(:meth:`~bankhub.storage.retention.RetentionStore.purge_batch`: the holds' shared lock first,
then the run's ownership, then select, refuse what is held, delete, audit the batch). Blobs
of deleted media are removed after their batch committed; their keys wait in
``purge_blob_queue`` until then, so a crash between the commit and the removal leaves them
queued and the next batch of any run removes them.

The clock every cutoff is measured from is the database's ``now()`` when the run started
(``purge_runs.now_at``): a resumed run deletes what the uninterrupted run would have. The
floor is the highest of the run's, the database's and this node's setting, every batch.

**Erasure** (:func:`erase`): see :func:`erase`.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import msgspec

from .. import policy
from ..blobs import BlobStore, BlobUnavailable
from ..compliance import retention as rules
from ..models import Role, User
from ..settings import Settings
from ..storage.db import Conn, Database
from ..storage.retention import (
    BatchOutcome,
    ConvFacts,
    PolicyRow,
    PurgeFenced,
    RequestRow,
    RetentionStore,
    RunRow,
    lock_policies_exclusive_txn,
)
from ..storage.users import UserStore
from . import audit
from .errors import ActionError, require
from .sensitive import refuse_sensitive

__all__ = [
    "CONVERSATION_CHUNK",
    "ErasureRefusal",
    "ErasureReport",
    "list_policies",
    "set_policy",
    "remove_policy",
    "request_erasure",
    "list_requests",
    "get_request",
    "approve_request",
    "reject_request",
    "start_purge",
    "resume_purge",
    "run_purge",
    "periodic_purge",
    "drain_blob_queue",
    "erase",
    "cutoffs_for",
]

log = logging.getLogger("bankhub.actions.retention")

CONVERSATION_CHUNK = 500
"""Conversations whose retention one batch resolves at most (their facts are read in the batch)."""
_BLOB_DRAIN = 1000
MAX_REASON_CHARS = 500

OnBatch = Callable[[RunRow, BatchOutcome], None]


def _officer(actor: User | None) -> None:
    """``None`` is the operator's CLI or the node itself (audited as ``system``)."""
    if actor is not None:
        require(policy.may_manage_retention(actor))


def _actor(actor: User | None) -> audit.Actor:
    return actor if actor is not None else audit.SYSTEM


def _request_target(rid: str) -> str:
    return f"retention_request:{rid}"


# --- policies ---------------------------------------------------------------------------


async def list_policies(db: Database, actor: User | None, after: tuple[str, str] | None, limit: int) -> list[PolicyRow]:
    _officer(actor)
    return await RetentionStore(db).policies(after, limit)


async def floor(db: Database, settings: Settings) -> int:
    """The records floor in force: the database's, raised to this node's setting if higher."""
    return await RetentionStore(db).floor(settings.retention_floor_days)


async def _apply_policy_txn(
    db: Database, conn: Conn, actor: audit.Actor, actor_id: str | None, scope: str, value: str, user_id: str | None,
    days: int, floor_days: int, via: str | None = None, origin: Mapping[str, str] | None = None,
) -> PolicyRow:
    # the floor may have risen since the request: checked again where it takes effect
    if days < await RetentionStore.floor_txn(conn, floor_days):
        raise ActionError("below_floor", "the records floor has risen above this policy's days")
    pid, replaced = await RetentionStore.set_policy_txn(conn, scope, value, user_id, days, actor_id)
    details: dict[str, Any] = {"scope": scope, "value": value, "days": days, "replaced_days": replaced, **(origin or {})}
    if via is not None:
        details["request_id"] = via
    await audit.record(db, actor=actor, action=audit.RETENTION_POLICY_SET, target=f"retention_policy:{pid}", details=details, conn=conn)
    row = await RetentionStore.policy_txn(conn, pid)
    assert row is not None  # written in this transaction
    return row


async def set_policy(
    db: Database, settings: Settings, actor: User | None, scope: str, value: str, days: int,
    via: Mapping[str, str] | None = None,
) -> PolicyRow | RequestRow:
    """Set (or replace) the policy of ``scope``/``value``; a ``user`` value is a username.
    Refuses a policy below the floor (``below_floor``) and unknown kinds, roles and accounts.

    An officer's new policy, or one shorter than the policy it replaces, is a pending request
    (returned as a :class:`RequestRow`) until a second officer approves it; a longer one (or
    the hub's own, ``actor`` None) applies at once (the :class:`PolicyRow`). ``via`` (the
    command line's origin) is added to the audit details."""
    _officer(actor)
    store = RetentionStore(db)
    try:
        rules.validate_value(scope, value)
        rules.validate_days(days, await store.floor(settings.retention_floor_days))
    except rules.PolicyError as exc:
        raise ActionError(exc.code, exc.message) from None
    user_id: str | None = None
    if scope == "user":
        target = await UserStore(db).by_username(value)
        if target is None:
            # the same answer for any unknown name: an officer names accounts they know
            raise ActionError("invalid_request", "a user policy's value is the username of an account")
        user_id = value = target.id
    async with db.transaction("retention_policy_set") as conn:
        # a purge batch in flight finishes first; the next one sees the change
        await lock_policies_exclusive_txn(conn)
        current = await RetentionStore.policy_days_txn(conn, scope, value)
        if actor is None or (current is not None and days >= current):
            return await _apply_policy_txn(
                db, conn, _actor(actor), actor.id if actor else None, scope, value, user_id, days, settings.retention_floor_days,
                origin=via,
            )
        request = await RetentionStore.add_request_txn(conn, "policy_set", actor.id, scope=scope, value=value, user_id=user_id, days=days)
        await audit.record(
            db,
            actor=actor,
            action=audit.RETENTION_REQUESTED,
            target=_request_target(request.id),
            details={"kind": "policy_set", "scope": scope, "value": value, "days": days, "current_days": current, **(via or {})},
            conn=conn,
        )
    return request


async def remove_policy(
    db: Database, actor: User | None, policy_id: str, via: Mapping[str, str] | None = None
) -> RequestRow | None:
    """Remove a policy. Removing one may shorten a conversation's retention (a shorter policy
    then decides), so an officer's removal is a pending request (returned); the hub's own
    (``actor`` None) applies at once (None). ``via`` is added to the audit details."""
    _officer(actor)
    try:
        uuid.UUID(policy_id)
    except ValueError:
        raise ActionError("not_found", "no such retention policy") from None
    async with db.transaction("retention_policy_remove") as conn:
        await lock_policies_exclusive_txn(conn)
        row = await RetentionStore.policy_txn(conn, policy_id)
        if row is None:
            raise ActionError("not_found", "no such retention policy")
        if actor is None:
            await _remove_policy_txn(db, conn, audit.SYSTEM, policy_id)
            return None
        request = await RetentionStore.add_request_txn(
            conn, "policy_remove", actor.id, scope=row.scope, value=row.value,
            user_id=row.value if row.scope == "user" else None, days=row.days, policy_id=policy_id,
        )
        await audit.record(
            db,
            actor=actor,
            action=audit.RETENTION_REQUESTED,
            target=_request_target(request.id),
            details={
                "kind": "policy_remove", "policy_id": policy_id, "scope": row.scope, "value": row.value, "days": row.days,
                **(via or {}),
            },
            conn=conn,
        )
    return request


async def _remove_policy_txn(db: Database, conn: Conn, actor: audit.Actor, policy_id: str, via: str | None = None) -> None:
    gone = await RetentionStore.delete_policy_txn(conn, policy_id)
    if gone is None:
        raise ActionError("conflict", "the policy no longer exists")
    details: dict[str, Any] = {"scope": gone[0], "value": gone[1], "days": gone[2]}
    if via is not None:
        details["request_id"] = via
    await audit.record(
        db, actor=actor, action=audit.RETENTION_POLICY_REMOVED, target=f"retention_policy:{policy_id}", details=details, conn=conn
    )


# --- dual control -----------------------------------------------------------------------------


async def request_erasure(
    db: Database, actor: User, username: str, reason: str, via: Mapping[str, str] | None = None
) -> RequestRow:
    """An officer files a data subject's erasure request; a second officer approves it
    (:func:`approve_request`), which runs :func:`erase`. ``not_found`` for anything but a customer.
    ``via`` is added to the audit details."""
    _officer(actor)
    reason = _reason(reason)
    user = await _customer(db, username)
    async with db.transaction("retention_erasure_request") as conn:
        request = await RetentionStore.add_request_txn(conn, "erasure", actor.id, user_id=user.id, reason=reason)
        await audit.record(
            db,
            actor=actor,
            action=audit.RETENTION_REQUESTED,
            target=_request_target(request.id),
            reason=reason,
            details={"kind": "erasure", "user_id": user.id, **(via or {})},
            conn=conn,
        )
    return request


async def list_requests(
    db: Database, actor: User, state: str | None, after: tuple[dt.datetime, str] | None, limit: int
) -> list[RequestRow]:
    _officer(actor)
    return await RetentionStore(db).requests(state, after, limit)


async def get_request(db: Database, actor: User, request_id: str) -> RequestRow:
    _officer(actor)
    async with db.connection("retention_request") as conn:
        row = await RetentionStore.request_txn(conn, _request_id(request_id))
    if row is None:
        raise ActionError("not_found", "no such request")
    return row


def _request_id(request_id: str) -> str:
    try:
        return str(uuid.UUID(request_id))
    except ValueError:
        raise ActionError("not_found", "no such request") from None


class Approved(msgspec.Struct):
    """What an approval did: the request, and the policy it set or the erasure's report."""

    request: RequestRow
    policy: PolicyRow | None = None
    erasure: ErasureReport | None = None


async def approve_request(db: Database, settings: Settings, actor: User, request_id: str) -> Approved:
    """A second active compliance officer approves a pending request: the policy change takes
    effect (in this transaction), or the erasure runs. The requester: ``403 forbidden``; not
    pending, a requester no longer an active officer, or older than
    ``BANKHUB_RETENTION_REQUEST_TTL_HOURS``: ``409 conflict``."""
    _officer(actor)
    rid = _request_id(request_id)
    ttl = dt.timedelta(hours=settings.retention_request_ttl_hours)
    result: PolicyRow | None = None
    erasure_id: str | None = None
    async with db.transaction("retention_request_approve") as conn:
        await lock_policies_exclusive_txn(conn)
        row = await RetentionStore.request_txn(conn, rid, lock=True)
        if row is None:
            raise ActionError("not_found", "no such request")
        # every officer involved as they are now, share-locked until this commits
        users = await UserStore.lock_shared(conn, [actor.id, row.requested_by_id])
        decider = users.get(actor.id, actor)
        expired = row.requested_at < dt.datetime.now(dt.timezone.utc) - ttl
        require(
            policy.may_approve_retention_request(
                decider, users.get(row.requested_by_id), pending=row.state == "pending", expired=expired
            )
        )
        result_id: str | None = None
        if row.kind == "policy_set":
            assert row.scope is not None and row.days is not None
            value = row.user_id if row.scope == "user" and row.user_id else row.value
            assert value is not None
            result = await _apply_policy_txn(
                db, conn, decider, row.requested_by_id, row.scope, value, row.user_id, row.days,
                settings.retention_floor_days, via=rid,
            )
            result_id = result.id
        elif row.kind == "policy_remove":
            assert row.policy_id is not None
            await _remove_policy_txn(db, conn, decider, row.policy_id, via=rid)
            result_id = row.policy_id
        else:
            erasure_id = result_id = str(uuid.uuid4())
        await RetentionStore.decide_request_txn(conn, rid, "approved", decider.id, result_id)
        await audit.record(
            db,
            actor=decider,
            action=audit.RETENTION_REQUEST_APPROVED,
            target=_request_target(rid),
            reason=row.reason,
            details={"kind": row.kind, "requested_by": row.requested_by, "result_id": result_id},
            conn=conn,
        )
        done = await RetentionStore.request_txn(conn, rid)
    assert done is not None
    if erasure_id is not None:
        assert row.username is not None and row.reason is not None
        report = await erase(
            db, settings, None, row.username, row.reason, erasure_id=erasure_id, requested_by=row.requested_by_id, approver=decider
        )
        return Approved(done, erasure=report)
    return Approved(done, policy=result)


async def reject_request(db: Database, actor: User, request_id: str) -> RequestRow:
    """Any active compliance officer (the requester too: a withdrawal) rejects a pending request;
    nothing changes. Not pending: ``409 conflict``."""
    _officer(actor)
    rid = _request_id(request_id)
    async with db.transaction("retention_request_reject") as conn:
        row = await RetentionStore.request_txn(conn, rid, lock=True)
        if row is None:
            raise ActionError("not_found", "no such request")
        users = await UserStore.lock_shared(conn, [actor.id])
        decider = users.get(actor.id, actor)
        require(policy.may_reject_retention_request(decider, pending=row.state == "pending"))
        await RetentionStore.decide_request_txn(conn, rid, "rejected", decider.id)
        await audit.record(
            db,
            actor=decider,
            action=audit.RETENTION_REQUEST_REJECTED,
            target=_request_target(rid),
            details={"kind": row.kind, "requested_by": row.requested_by, "withdrawn": row.requested_by_id == decider.id},
            conn=conn,
        )
        done = await RetentionStore.request_txn(conn, rid)
    assert done is not None
    return done


# --- the purge ------------------------------------------------------------------------------


def cutoffs_for(
    policies: list[tuple[str, str, int]], facts: list[ConvFacts], now: dt.datetime, floor_days: int
) -> list[tuple[str, dt.datetime]]:
    """(conversation id, cutoff) for each conversation of ``facts`` some policy applies to
    (never kept for less than ``floor_days``)."""
    ps = [rules.Policy(s, v, d) for s, v, d in policies]
    out: list[tuple[str, dt.datetime]] = []
    for f in facts:
        days = rules.retention_days(ps, rules.ConversationFacts(f.kind, f.member_ids, f.member_roles), floor_days)
        limit = rules.cutoff(now, days)
        if limit is not None:
            out.append((f.id, limit))
    return out


def _batch_size(settings: Settings, batch_size: int | None) -> int:
    if batch_size is None:
        return settings.retention_purge_batch
    if not 1 <= batch_size <= 10_000:
        raise ActionError("invalid_request", "batch_size is 1 to 10000")
    return batch_size


async def start_purge(db: Database, settings: Settings, actor: User | None, batch_size: int | None = None) -> RunRow:
    """A new purge run (``running``), audited ``retention.purge_started`` in the run's own
    transaction with the floor and the policies in force; ``purge_running`` while another one
    runs (with a fresh heartbeat)."""
    _officer(actor)
    size = _batch_size(settings, batch_size)
    stale = dt.timedelta(seconds=settings.retention_purge_stale_seconds)
    async with db.transaction("purge_run_start") as conn:
        run = await RetentionStore.start_run_txn(conn, actor.id if actor else None, size, settings.retention_floor_days, stale)
        if run is None:
            raise ActionError("purge_running", "a purge is running; wait for it, or resume it if it was interrupted")
        await audit.record(
            db,
            actor=_actor(actor),
            action=audit.RETENTION_PURGE_STARTED,
            target=f"purge_run:{run.id}",
            details={
                "now_at": run.now_at.isoformat(),
                "batch_size": size,
                "floor_days": run.floor_days,
                "policies": await RetentionStore.policies_in_force_txn(conn),
            },
            conn=conn,
        )
    return run


async def _claim(db: Database, settings: Settings, actor: User | None, run_id: str, size: int | None) -> tuple[str, RunRow | None]:
    stale = dt.timedelta(seconds=settings.retention_purge_stale_seconds)
    async with db.transaction("purge_run_resume") as conn:
        outcome, run = await RetentionStore.claim_resume_txn(conn, run_id, size, settings.retention_floor_days, stale)
        if outcome == "resumed" and run is not None:
            await audit.record(
                db,
                actor=_actor(actor),
                action=audit.RETENTION_PURGE_RESUMED,
                target=f"purge_run:{run.id}",
                details={
                    "cursor_conversation": run.cursor_conversation,
                    "cursor_seq": run.cursor_seq,
                    "batch_size": run.batch_size,
                    "floor_days": run.floor_days,
                },
                conn=conn,
            )
    return outcome, run


async def resume_purge(
    db: Database, settings: Settings, actor: User | None, run_id: str, batch_size: int | None = None
) -> RunRow:
    """Take over an interrupted run (``interrupted``/``failed``, or ``running`` with a stale
    heartbeat) under a new fencing token; audited ``retention.purge_resumed`` in the same
    transaction. ``purge_running`` while it (or another) runs."""
    _officer(actor)
    size = None if batch_size is None else _batch_size(settings, batch_size)
    try:
        uuid.UUID(run_id)
    except ValueError:
        raise ActionError("not_found", "no such purge run") from None
    outcome, run = await _claim(db, settings, actor, run_id, size)
    if outcome == "not_found" or run is None:
        raise ActionError("not_found", "no such purge run")
    if outcome == "finished":
        raise ActionError("conflict", "this purge run is done: start a new one")
    if outcome == "busy":
        raise ActionError("purge_running", "a purge is running; it can be resumed once it stops or its worker is gone")
    return run


async def drain_blob_queue(db: Database, blobs: BlobStore, keys: list[str] | None = None) -> int:
    """Remove queued blobs (``keys``, or whatever is queued) and dequeue the removed ones;
    a blob store that is down leaves them queued for the next batch. Returns how many went."""
    store = RetentionStore(db)
    todo = keys if keys is not None else await store.queued_blobs(_BLOB_DRAIN)
    done: list[str] = []
    for key in todo:
        try:
            await blobs.delete(key)
        except BlobUnavailable:
            log.warning("the blob store is unavailable: %d purged media blobs stay queued", len(todo) - len(done))
            break
        done.append(key)
    await store.dequeue_blobs(done)
    return len(done)


def _batch_auditor(db: Database, run: RunRow, actor: User | None) -> Callable[[Conn, BatchOutcome, list[Any], int], Any]:
    async def record(conn: Conn, outcome: BatchOutcome, gone: list[Any], floor_days: int) -> None:
        # which messages went: per conversation, the seq range and count (in the batch's transaction)
        ranges: dict[str, list[int]] = {}
        for r in gone:
            span = ranges.setdefault(str(r["conversation_id"]), [r["seq"], r["seq"], 0])
            span[0], span[1], span[2] = min(span[0], r["seq"]), max(span[1], r["seq"]), span[2] + 1
        await audit.record(
            db,
            actor=_actor(actor),
            action=audit.RETENTION_PURGE_BATCH,
            target=f"purge_run:{run.id}",
            details={
                "batch": run.batches + 1,
                "floor_days": floor_days,
                "deleted_messages": outcome.deleted_messages,
                "deleted_media": outcome.deleted_media,
                "conversations": [
                    {"conversation_id": c, "from_seq": a, "to_seq": b, "count": n} for c, (a, b, n) in sorted(ranges.items())
                ],
            },
            conn=conn,
        )

    return record


async def run_purge(
    db: Database,
    blobs: BlobStore,
    run: RunRow,
    *,
    actor: User | None = None,
    on_batch: OnBatch | None = None,
    max_batches: int | None = None,
    floor_days: int | None = None,
) -> RunRow:
    """Run ``run`` (claimed: ``running``, owned by ``run.owner``) batch by batch to its end;
    returns its final row. ``floor_days`` is this node's setting (each batch keeps the highest
    of it, the run's and the database's floor; None: the run's and the database's).

    Ends ``done`` (audited ``retention.purge_finished`` with the counts), ``interrupted``
    after ``max_batches`` (a planned pause) or when cancelled (the node stops) — audited
    ``retention.purge_interrupted`` — or ``failed`` when a batch raised (also audited; either
    way it can be resumed from its cursor). A worker whose run was taken over by another
    (its heartbeat went stale) stops at its next batch and changes nothing."""
    store = RetentionStore(db)
    batches = 0
    try:
        # blobs a crash left behind after their rows' batch committed (inside the try: a failure
        # here ends the run failed, resumable, instead of leaving it running)
        await drain_blob_queue(db, blobs)
        while True:
            outcome = await store.purge_batch(
                run, run.batch_size, CONVERSATION_CHUNK, floor_days or 1, cutoffs_for, _batch_auditor(db, run, actor)
            )
            run = msgspec.structs.replace(
                run,
                cursor_conversation=outcome.cursor_conversation,
                cursor_seq=outcome.cursor_seq,
                scanned=run.scanned + outcome.scanned,
                deleted_messages=run.deleted_messages + outcome.deleted_messages,
                deleted_media=run.deleted_media + outcome.deleted_media,
                refused_held=run.refused_held + outcome.refused_held,
                batches=run.batches + 1,
            )
            if outcome.blob_keys:
                await drain_blob_queue(db, blobs, outcome.blob_keys)
                await store.heartbeat(run)  # the drain may have been slow: alive, and still the owner
            if on_batch is not None:
                on_batch(run, outcome)
            batches += 1
            if outcome.finished:
                break
            if max_batches is not None and batches >= max_batches:
                return await _stop(db, store, run, actor, "interrupted", why="max_batches")
    except PurgeFenced:
        log.warning("purge run %s was taken over by another worker: this one stops", run.id)
        final = await store.get_run(run.id)
        assert final is not None
        return final
    except asyncio.CancelledError:
        await asyncio.shield(_stop(db, store, run, actor, "interrupted", why="stopped"))
        raise
    except Exception as exc:
        log.exception("purge run %s failed at batch %d", run.id, run.batches + 1)
        await _stop(db, store, run, actor, "failed", error=type(exc).__name__)
        raise
    return await _stop(db, store, run, actor, "done")


async def _stop(
    db: Database, store: RetentionStore, run: RunRow, actor: User | None, state: str, *, why: str | None = None,
    error: str | None = None,
) -> RunRow:
    """End the run (only while this worker owns it) and audit it in the same transaction."""
    async with db.transaction("purge_run_finish") as conn:
        if await store.finish_run_txn(conn, run, state, error):
            final = await RetentionStore._get(conn, uuid.UUID(run.id))
            assert final is not None
            if state == "interrupted":
                await audit.record(
                    db,
                    actor=_actor(actor),
                    action=audit.RETENTION_PURGE_INTERRUPTED,
                    target=f"purge_run:{run.id}",
                    details={"why": why, "batches": final.batches, "cursor_conversation": final.cursor_conversation,
                             "cursor_seq": final.cursor_seq},
                    conn=conn,
                )
            else:
                await audit.record(
                    db,
                    actor=_actor(actor),
                    action=audit.RETENTION_PURGE_FINISHED,
                    target=f"purge_run:{run.id}",
                    details={
                        "state": final.state,
                        "scanned": final.scanned,
                        "deleted_messages": final.deleted_messages,
                        "deleted_media": final.deleted_media,
                        "refused_held": final.refused_held,
                        "batches": final.batches,
                        "error": final.error,
                    },
                    conn=conn,
                )
            return final
    final = await store.get_run(run.id)
    assert final is not None
    return final


async def periodic_purge(db: Database, blobs: BlobStore, settings: Settings) -> RunRow | None:
    """The node's periodic purge: resume an interrupted run if there is one (audited
    ``retention.purge_resumed``), else start one; nothing while another node's run is alive."""
    store = RetentionStore(db)
    floor_days = settings.retention_floor_days
    for candidate in await store.runs(None, 5):
        if candidate.state in ("interrupted", "failed") or candidate.state == "running":
            outcome, run = await _claim(db, settings, None, candidate.id, None)
            if outcome == "resumed" and run is not None:
                return await run_purge(db, blobs, run, floor_days=floor_days)
            if outcome == "busy":
                return None
        break
    try:
        started = await start_purge(db, settings, None)
    except ActionError:
        return None  # another node's run started meanwhile
    return await run_purge(db, blobs, started, floor_days=floor_days)


# --- erasure (PIPL art. 47) --------------------------------------------------------------------


class ErasureRefusal(msgspec.Struct, omit_defaults=True):
    conversation_id: str
    why: str  # "held" | "records" | "shared"
    hold_ids: list[str] | None = None
    # records: the earliest date they may go (RFC 3339); absent when no policy applies (kept)
    until: str | None = None


class ErasureReport(msgspec.Struct):
    erasure_id: str
    shredded: list[str]
    refused: list[ErasureRefusal]


@dataclass
class _Plan:
    shred: list[str] = field(default_factory=list)
    refused: list[ErasureRefusal] = field(default_factory=list)


class _NowARecord(Exception):
    """Raised in the shredding transaction: the conversation turned into a record (staff joined)."""

    def __init__(self, why: str) -> None:
        super().__init__(why)
        self.why = why


def _reason(reason: str) -> str:
    reason = reason.strip()
    if not 1 <= len(reason) <= MAX_REASON_CHARS:
        raise ActionError("invalid_request", f"a reason of 1 to {MAX_REASON_CHARS} characters is required")
    refuse_sensitive(reason=reason)  # kept in the audit rows and the erasure's record
    return reason


async def _customer(db: Database, username: str) -> User:
    user = await UserStore(db).by_username(username)
    if user is None or user.role is not Role.CUSTOMER:
        # the same answer for an unknown name and a staff account: staff records are not erased
        raise ActionError("not_found", "no customer account with that username")
    return user


def _why_kept(kind: str, roles: frozenset[str], others_now: int) -> str | None:
    # the verdict is the pure rule's (compliance/retention.py); a hold is checked where the shred runs
    return rules.erasure_verdict(kind, roles, others_now)


async def erase(
    db: Database,
    settings: Settings,
    actor: User | None,
    username: str,
    reason: str,
    *,
    erasure_id: str | None = None,
    requested_by: str | None = None,
    approver: User | None = None,
) -> ErasureReport:
    """A data subject's erasure request (PIPL art. 47), by crypto-shredding. An officer's
    request runs this once a second officer approved it (:func:`approve_request`:
    ``approver``); the operator's CLI runs it directly.

    For each conversation the user is or was a member of:

    * a member of staff was ever in it (an RM's chat, the service desk, a staff group), or it
      is a service-desk conversation: it is a bank record — refused, ``why: "records"``, with
      ``until`` the date its retention (at least the records floor) has run from its newest
      message; a purge deletes its messages then, except the newest one (it anchors the
      conversation's sync), which stays until the conversation is shredded. No ``until`` when
      no policy applies to it: it is kept;
    * a customer-only group with other members left: refused, ``why: "shared"`` (the others'
      conversation is not the requester's to destroy);
    * otherwise (a customer-only direct chat — both parties' copy goes, as the chat has only
      the two of them; a customer-only group whose last member the user is): crypto-shredded —
      unless an active legal hold covers it, checked in the shredding transaction under the
      holds' shared lock: refused, ``why: "held"``, naming the holds. The members and their
      roles are read again in that transaction: a member of staff who joined since makes it
      ``records`` after all.

    Audited ``erasure.requested`` before anything is destroyed, ``keys.shredded`` per
    conversation (in its shredding transaction), ``erasure.completed`` with the counts.
    """
    _officer(actor)
    reason = _reason(reason)
    user = await _customer(db, username)
    store = RetentionStore(db)
    erasure_id = erasure_id or str(uuid.uuid4())
    who: audit.Actor = approver if approver is not None else _actor(actor)
    await audit.record(
        db,
        actor=who,
        action=audit.ERASURE_REQUESTED,
        target=audit.user_target(user),
        reason=reason,
        details={"erasure_id": erasure_id, **({"requested_by": requested_by} if requested_by else {})},
    )
    policies = [rules.Policy(r.scope, r.value, r.days) for r in await store.policies(None, 100_000)]
    floor_days = await store.floor(settings.retention_floor_days)
    plan = _Plan()
    for conv in await store.user_conversations(user.id):
        why = _why_kept(conv.kind, conv.member_roles, conv.current_members - (1 if conv.is_member else 0))
        if why == "records":
            days = rules.retention_days(policies, rules.ConversationFacts(conv.kind, conv.member_ids, conv.member_roles), floor_days)
            until = (conv.newest_at + dt.timedelta(days=days)).isoformat() if conv.newest_at and days is not None else None
            plan.refused.append(ErasureRefusal(conv.id, "records", until=until))
        elif why == "shared":
            # someone else is still in it (the requester may have left already)
            plan.refused.append(ErasureRefusal(conv.id, "shared"))
        else:
            plan.shred.append(conv.id)
    shredded: list[str] = []
    for cid in plan.shred:

        async def audited(conn: Conn, cid: str = cid) -> None:
            # decided again under the conversation's row lock the shred holds: who is in it now
            kind, roles, others = await store.erasable_txn(conn, cid, user.id)
            if (why := _why_kept(kind, roles, others)) is not None:
                raise _NowARecord(why)
            await audit.record(
                db,
                actor=who,
                action=audit.KEYS_SHREDDED,
                target=f"conversation:{cid}",
                reason=f"erasure:{erasure_id}",
                conn=conn,
            )

        try:
            outcome, holds = await store.shred_unless_held(cid, audited)
        except _NowARecord as exc:
            plan.refused.append(ErasureRefusal(cid, exc.why))
            continue
        if outcome == "held":
            plan.refused.append(ErasureRefusal(cid, "held", hold_ids=[h.hold_id for h in holds]))
        elif outcome in ("shredded", "already_shredded"):
            shredded.append(cid)
    plan.refused.sort(key=lambda r: r.conversation_id)
    report = ErasureReport(erasure_id=erasure_id, shredded=shredded, refused=plan.refused)
    counts: dict[str, int] = {}
    for r in plan.refused:
        counts[r.why] = counts.get(r.why, 0) + 1
    async with db.transaction("erasure_completed") as conn:
        await store.record_erasure_txn(
            conn, erasure_id, user.id, requested_by or (actor.id if actor else None), reason, msgspec.json.encode(report)
        )
        await audit.record(
            db,
            actor=who,
            action=audit.ERASURE_COMPLETED,
            target=audit.user_target(user),
            reason=reason,
            details={"erasure_id": erasure_id, "shredded": len(shredded), "refused": counts},
            conn=conn,
        )
    return report
