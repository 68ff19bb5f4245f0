"""Recording audit events: one call from any action.

    await audit.record(hub, actor=session.user, action="user.role_changed",
                       target=audit.user_target(target), reason="promoted", ip=ip,
                       details={"from": "rm", "to": "branch_admin"})

``actor`` is the :class:`~bankhub.models.User` (or :class:`~bankhub.models.Session`)
doing it, or a system name such as :data:`SYSTEM` or :data:`ANONYMOUS`. Pass ``conn=`` (a
connection inside an open transaction) to make the audit row commit or roll back with
the change it records; append it last in that transaction, because every other append
waits until it ends. Without ``conn`` the row is written in a transaction of its own.

A failure to record raises: an action that must be audited fails rather than going
unaudited. Text that may come from an attacker (an attempted username) is made storable
here: NULs and unpaired surrogates become U+FFFD. Callers bound its length.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..hub import Hub
from ..models import Session, User
from ..storage.audit import AuditEntry, AuditRow, AuditStore, Head, VerifyReport
from ..storage.audit import verify as verify_chain
from ..storage.db import Conn, Database

__all__ = [
    "ANONYMOUS",
    "SYSTEM",
    "SESSION_LOGIN",
    "SESSION_LOGIN_FAILED",
    "SESSION_REVOKED",
    "USER_ROLE_CHANGED",
    "CUSTOMER_REASSIGNED",
    "KEYS_ROTATED",
    "KEYS_SHREDDED",
    "KEYS_RETIRED",
    "PRIVILEGED_READ",
    "USER_BOOTSTRAPPED",
    "ADMIN_REQUEST_FILED",
    "ADMIN_REQUEST_APPROVED",
    "ADMIN_REQUEST_REJECTED",
    "ADMIN_REQUEST_EXPIRED",
    "AUDIT_VERIFIED",
    "EXPORT_REQUESTED",
    "EXPORT_APPROVED",
    "EXPORT_REJECTED",
    "EXPORT_STARTED",
    "EXPORT_COMPLETED",
    "EXPORT_FAILED",
    "EXPORT_DOWNLOADED",
    "EXPORT_RETRIED",
    "EXPORT_EXPIRED",
    "HOLD_PLACED",
    "HOLD_RELEASE_REQUESTED",
    "HOLD_RELEASED",
    "HOLD_RELEASE_REJECTED",
    "HOLD_SHRED_REFUSED",
    "BARRIER_SEGMENT_CREATED",
    "BARRIER_MEMBER_ADDED",
    "BARRIER_MEMBER_REMOVED",
    "BARRIER_POLICY_ADDED",
    "BARRIER_POLICY_REMOVED",
    "DLP_SEARCHED",
    "RETENTION_POLICY_SET",
    "RETENTION_POLICY_REMOVED",
    "RETENTION_PURGE_STARTED",
    "RETENTION_PURGE_RESUMED",
    "RETENTION_PURGE_FINISHED",
    "RETENTION_PURGE_BATCH",
    "RETENTION_PURGE_INTERRUPTED",
    "RETENTION_REQUESTED",
    "RETENTION_REQUEST_APPROVED",
    "RETENTION_REQUEST_REJECTED",
    "ERASURE_REQUESTED",
    "ERASURE_COMPLETED",
    "SUPERVISION_RULE_ADDED",
    "SUPERVISION_RULE_CHANGED",
    "SUPERVISION_RULE_REMOVED",
    "SUPERVISION_FLAG_ESCALATED",
    "SUPERVISION_FLAG_CLOSED",
    "Actor",
    "record",
    "verify",
    "user_target",
    "session_target",
    "clean_text",
]

ANONYMOUS = "anonymous"  # an unauthenticated caller (a failed sign-in)
SYSTEM = "system"  # the hub itself (background jobs, the CLI)

SESSION_LOGIN = "session.login"
SESSION_LOGIN_FAILED = "session.login_failed"
SESSION_REVOKED = "session.revoked"
USER_ROLE_CHANGED = "user.role_changed"
USER_PASSWORD_CHANGED = "user.password_changed"
USER_LOCKED = "user.locked"
CUSTOMER_REASSIGNED = "customer.reassigned"
KEYS_ROTATED = "keys.rotated"
KEYS_SHREDDED = "keys.shredded"
KEYS_RETIRED = "keys.retired"
PRIVILEGED_READ = "privileged_read"
# dual control of administrative accounts (actions/admin_requests.py)
USER_BOOTSTRAPPED = "user.bootstrapped"  # an administrative account made by the operator (demo seed)
ADMIN_REQUEST_FILED = "admin_request.filed"
ADMIN_REQUEST_APPROVED = "admin_request.approved"
ADMIN_REQUEST_REJECTED = "admin_request.rejected"
ADMIN_REQUEST_EXPIRED = "admin_request.expired"
# --- compliance console ---
AUDIT_VERIFIED = "audit.verified"  # an officer re-verified the chain (details: ok, rows, head, first_bad_seq)
# --- eDiscovery exports (target export:<id>) ---
EXPORT_REQUESTED = "export.requested"  # reason: the reason code; details: scope, case_ref
EXPORT_APPROVED = "export.approved"  # a second compliance officer approved it
EXPORT_REJECTED = "export.rejected"  # rejected, or withdrawn by its requester (details.withdrawn)
EXPORT_STARTED = "export.started"  # a node (or `bankhub export run`) began building it
EXPORT_COMPLETED = "export.completed"  # details: counts, bytes, sha256
EXPORT_FAILED = "export.failed"  # details: error (a fixed text)
EXPORT_DOWNLOADED = "export.downloaded"  # details: bytes, sha256
EXPORT_RETRIED = "export.retried"  # a failed export rebuilt at its requester's or approver's request
EXPORT_EXPIRED = "export.expired"  # past BANKHUB_EXPORT_RETENTION_DAYS: its key destroyed, its chunks deleted
# --- legal holds ---
HOLD_PLACED = "hold.placed"  # details: the hold's scope (name, case_ref, custodian, conversation_id, from, to)
HOLD_RELEASE_REQUESTED = "hold.release_requested"  # reason: the requester's reason
HOLD_RELEASED = "hold.released"  # a second compliance officer approved the release
HOLD_RELEASE_REJECTED = "hold.release_rejected"  # the request was rejected or withdrawn: the hold is active again
HOLD_SHRED_REFUSED = "hold.shred_refused"  # target conversation:<id>; details: hold_ids (a shred a hold refused)
# --- information barriers ---
BARRIER_SEGMENT_CREATED = "barrier.segment_created"  # target segment:<name>; details: title
BARRIER_MEMBER_ADDED = "barrier.member_added"  # target user:<id>; details: segment
BARRIER_MEMBER_REMOVED = "barrier.member_removed"  # target user:<id>; details: segment
BARRIER_POLICY_ADDED = "barrier.policy_added"  # target barrier_policy:<id>; details: a, b (segment names)
BARRIER_POLICY_REMOVED = "barrier.policy_removed"  # target barrier_policy:<id>; details: a, b
# --- data-loss prevention ---
DLP_SEARCHED = "dlp.searched"  # an officer searched the fingerprints (details: kind, matches, case_ref; never the value)
# --- retention, purge and erasure ---
RETENTION_POLICY_SET = "retention.policy_set"  # target retention_policy:<id>; details: scope, value, days, replaced
RETENTION_POLICY_REMOVED = "retention.policy_removed"  # target retention_policy:<id>; details: scope, value, days
RETENTION_PURGE_STARTED = "retention.purge_started"  # target purge_run:<id>; details: now_at, batch_size, floor, policies in force
RETENTION_PURGE_RESUMED = "retention.purge_resumed"  # target purge_run:<id>; details: cursor, batch_size, floor
RETENTION_PURGE_BATCH = "retention.purge_batch"  # target purge_run:<id>; details: per conversation: seq range, count, cutoff
RETENTION_PURGE_INTERRUPTED = "retention.purge_interrupted"  # target purge_run:<id>; details: why (max_batches, stopped)
RETENTION_PURGE_FINISHED = "retention.purge_finished"  # details: state and the counts (scanned, deleted, refused)
RETENTION_REQUESTED = "retention.requested"  # target retention_request:<id>; details: kind and what it asks
RETENTION_REQUEST_APPROVED = "retention.request_approved"  # target retention_request:<id>; details: kind, requested_by
RETENTION_REQUEST_REJECTED = "retention.request_rejected"  # target retention_request:<id>; details: kind, requested_by
ERASURE_REQUESTED = "erasure.requested"  # target user:<id>; reason: the officer's reason
ERASURE_COMPLETED = "erasure.completed"  # target user:<id>; details: erasure_id, shredded, refused (by why)
# --- supervision (actions/supervision.py) ---
SUPERVISION_RULE_ADDED = "supervision.rule_added"
SUPERVISION_RULE_CHANGED = "supervision.rule_changed"
SUPERVISION_RULE_REMOVED = "supervision.rule_removed"
SUPERVISION_FLAG_ESCALATED = "supervision.flag_escalated"
SUPERVISION_FLAG_CLOSED = "supervision.flag_closed"
# administrative actions use "admin.<verb>", e.g. "admin.user_disabled"

Actor = User | Session | str


def clean_text(value: str) -> str:
    """``value`` with NUL and unpaired surrogates replaced by U+FFFD (Postgres cannot store them)."""
    if "\x00" in value:
        value = value.replace("\x00", "\ufffd")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        value = "".join("\ufffd" if "\ud800" <= ch <= "\udfff" else ch for ch in value)
    return value


def _clean(value: Any) -> Any:
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, Mapping):
        return {clean_text(str(k)) if isinstance(k, str) else k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def user_target(user: User) -> str:
    return f"user:{user.id}"


def session_target(session_id: str) -> str:
    return f"session:{session_id}"


def _target(target: str | User | Session) -> str:
    if isinstance(target, User):
        return user_target(target)
    if isinstance(target, Session):
        return session_target(target.id)
    return target


async def record(
    hub: Hub | Database,
    *,
    actor: Actor,
    action: str,
    target: str | User | Session,
    reason: str | None = None,
    ip: str | None = None,
    details: Mapping[str, Any] | None = None,
    conn: Conn | None = None,
) -> AuditRow:
    """Append one audit row; returns it (with its seq and hash).

    ``hub`` may also be a bare :class:`~bankhub.storage.db.Database` (CLI-driven actions
    such as key rotation run without a hub).

    ``target`` is text such as ``"user:<uuid>"``, ``"session:<uuid>"``, ``"key:<id>"``
    (a :class:`User` or :class:`Session` is turned into that form).
    """
    if isinstance(actor, Session):
        actor = actor.user
    if isinstance(actor, User):
        actor_id: str | None = actor.id
        actor_name = actor.username
    else:
        actor_id, actor_name = None, actor
    entry = AuditEntry(
        actor=clean_text(actor_name),
        actor_id=actor_id,
        action=action,
        target=clean_text(_target(target)),
        reason=None if reason is None else clean_text(reason),
        ip=None if ip is None else clean_text(ip),
        details=_clean(details or {}),
    )
    store = AuditStore(hub) if isinstance(hub, Database) else hub.audit
    return await store.append(entry, conn=conn)


async def verify(hub: Hub, *, expect_head: Head | None = None, batch_size: int = 1000) -> VerifyReport:
    """Verify the whole chain (see :func:`bankhub.storage.audit.verify`)."""
    async with hub.db.connection("audit_verify") as conn:
        return await verify_chain(conn, expect_head=expect_head, batch_size=batch_size)
