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
