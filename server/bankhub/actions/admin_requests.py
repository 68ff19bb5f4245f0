"""Dual control of administrative accounts: list, approve and reject the requests filed by
:func:`bankhub.actions.users.create_user` and :func:`bankhub.actions.users.change_role`.

A request is decided by a second, existing administrator with authority over the org the
account is (or will be) in — never by the one who filed it, who may only withdraw it
(reject). Every principal is checked again at decision time, inside the deciding
transaction, the request row locked and the users share-locked until it commits: the
decider, the requester (still an active administrator entitled to make the request), the
target user of a role change, the org. A username taken meanwhile answers ``409``. The change, the decision and their audit rows (``admin_request.approved``
with ``user.created`` or ``user.role_changed``; ``admin_request.rejected``) commit in one
transaction. A request not decided within :data:`~bankhub.actions.users.REQUEST_TTL`
expires: deciding it then answers ``409`` and records ``admin_request.expired``.
"""

from __future__ import annotations


from .. import policy
from ..hub import Hub
from ..models import Role, User

from ..storage.accounts import AccountStore
from ..models import RequestKey
from ..storage.admin_requests import AdminRequestRow, AdminRequestStore
from ..storage.users import UsernameTaken, UserStore
from . import audit, groups
from .errors import ActionError, require
from .sessions import end_sessions, signal_principal_changed
from .users import USER_CREATED, AdminRequestView, request_view

__all__ = ["list_pending", "approve", "reject", "MAX_PAGE"]

MAX_PAGE = 200
_SCAN_LIMIT = 10_000  # candidates examined for one page at most (the policy filters them)


def _store(hub: Hub) -> AdminRequestStore:
    return AdminRequestStore(hub.db)


async def list_pending(hub: Hub, actor: User, *, after: RequestKey | None, limit: int) -> tuple[list[AdminRequestView], RequestKey | None]:
    """Pending, unexpired requests the actor may see (filed by them, or for an org they
    administer), oldest first; a page of up to ``limit`` after ``after``, and the key to
    continue from (None: no more)."""
    require(policy.may_view_admin_request(actor, actor.id, ()))  # administrators only (their own, at least)
    subtree = None if actor.role is Role.HEAD_OFFICE_ADMIN else actor.org_id
    found: list[AdminRequestRow] = []
    cursor, scanned = after, 0
    ancestry: dict[str, list[str]] = {}
    while True:
        batch = await _store(hub).pending_page(subtree_of=subtree, requested_by=actor.id, after=cursor, limit=limit + 1)
        for row in batch:
            if row.org_id not in ancestry:
                ancestry[row.org_id] = await hub.users.org_ancestry(row.org_id)
            if policy.may_view_admin_request(actor, row.requested_by, ancestry[row.org_id]).allowed:
                if len(found) == limit:  # one more visible request: there is a next page
                    return [request_view(r) for r in found], found[-1].key
                found.append(row)
            cursor, scanned = row.key, scanned + 1
        if len(batch) <= limit:
            return [request_view(r) for r in found], None
        if scanned >= _SCAN_LIMIT:  # bounded work per page: continue from here next time
            return [request_view(r) for r in found], cursor


async def _decide(hub: Hub, actor: User, request_id: str, *, approve_it: bool, ip: str | None) -> AdminRequestView:
    expired, done, target = False, None, None
    async with hub.transaction("admin_request_decide") as tx:
        conn = tx.conn
        locked = await AdminRequestStore.lock(conn, request_id)
        if locked is None:
            raise ActionError("not_found", "no such request")
        row, password_hash, expired = locked
        # every principal as it is now, read in the deciding transaction and share-locked
        # until it commits: a requester demoted or disabled, or a target whose role changed,
        # before this point is seen here, and after it waits for the decision
        users = await UserStore.lock_shared(
            conn, [actor.id, row.requested_by] + ([row.target_user_id] if row.target_user_id else [])
        )
        decider, requester = users.get(actor.id, actor), users.get(row.requested_by)
        target = users.get(row.target_user_id) if row.target_user_id else None
        if requester is None or (row.kind == "change_role" and target is None):
            raise ActionError("conflict", "the request no longer applies")
        role = Role(row.role)
        org_path = await UserStore.org_ancestry_in(conn, row.org_id)
        view = policy.may_view_admin_request(decider, row.requested_by, org_path)
        if not view.allowed:
            require(view)
        require(policy.may_decide_admin_request(decider, requester, role, org_path, approve=approve_it, target=target))
        if row.status != "pending":
            raise ActionError("conflict", f"this request is already {row.status}")
        if approve_it and not expired:
            # the maker's authority must still hold: a demoted or disabled requester's request dies with it
            if target is not None:
                maker = policy.may_request_role_change(requester, target, role, await UserStore.org_ancestry_in(conn, target.org_id))
            else:
                maker = policy.may_request_user(requester, role, org_path)
            if not maker.allowed:
                raise ActionError("conflict", "the requester may no longer make this request")
        details = {"kind": row.kind, "username": row.username, "role": row.role, "org": row.org_code, "requested_by": row.requested_by}
        if expired:
            await AdminRequestStore.decide(conn, request_id, "expired", None)
            await audit.record(
                hub, actor=audit.SYSTEM, action=audit.ADMIN_REQUEST_EXPIRED, target=f"admin_request:{request_id}", details=details, conn=conn
            )
        elif not approve_it:
            done = await AdminRequestStore.decide(conn, request_id, "rejected", actor.id)
            await audit.record(
                hub,
                actor=actor,
                action=audit.ADMIN_REQUEST_REJECTED,
                target=f"admin_request:{request_id}",
                ip=ip,
                details={**details, "withdrawn": actor.id == row.requested_by},
                conn=conn,
            )
        elif row.kind == "create_user":
            taken = ActionError("conflict", f"the username {row.username!r} is taken")
            if password_hash is None or await UserStore.username_exists(conn, row.username):
                raise taken
            try:  # a user created meanwhile, by a direct create committing just now, too
                user = await hub.users.create_user(
                    conn,
                    username=row.username,
                    display_name=row.display_name or row.username,
                    role=role,
                    org_id=row.org_id,
                    password_hash=password_hash,
                )
            except UsernameTaken:
                raise taken from None
            followed = await AccountStore.follow_defaults(conn, user.id, role)
            done = await AdminRequestStore.decide(conn, request_id, "approved", actor.id, user.id)
            await audit.record(
                hub,
                actor=actor,
                action=USER_CREATED,
                target=user,
                ip=ip,
                details={"role": role.value, "org": row.org_code, "rm": None, "auto_followed": followed, "request": request_id,
                         "requested_by": row.requested_by},
                conn=conn,
            )
            await audit.record(
                hub, actor=actor, action=audit.ADMIN_REQUEST_APPROVED, target=f"admin_request:{request_id}", ip=ip, details=details, conn=conn
            )
        else:
            assert target is not None
            await UserStore.set_role_in(conn, target.id, role)
            # every node drops its cached sessions of the target when (and only if) the role commits
            signal_principal_changed(tx, target.id)
            done = await AdminRequestStore.decide(conn, request_id, "approved", actor.id, target.id)
            await audit.record(
                hub,
                actor=actor,
                action=audit.USER_ROLE_CHANGED,
                target=target,
                ip=ip,
                details={"from": target.role.value, "to": role.value, "request": request_id, "requested_by": row.requested_by},
                conn=conn,
            )
            await audit.record(
                hub, actor=actor, action=audit.ADMIN_REQUEST_APPROVED, target=f"admin_request:{request_id}", ip=ip, details=details, conn=conn
            )
    if expired:
        raise ActionError("conflict", "this request has expired; file it again")
    assert done is not None
    try:
        if approve_it and target is not None:
            hub.session_cache.forget_user(target.id)  # this node at once (the others on the signal)
            # the user signs in again, on every node (as for a direct role change); before the
            # org groups, so a slow or failing reconcile neither delays nor skips it
            await end_sessions(
                hub, actor, target.id, reason="role changed", told="role changed: sign in again", audit_target=f"user:{target.id}", ip=ip
            )
    finally:
        if approve_it and done.result_user_id is not None:
            await groups.reconcile_user(hub, done.result_user_id)  # the account created or moved: its org groups
    return request_view(done)


async def approve(hub: Hub, actor: User, request_id: str, *, ip: str | None = None) -> AdminRequestView:
    """A second administrator approves: the account is created or the role granted."""
    return await _decide(hub, actor, request_id, approve_it=True, ip=ip)


async def reject(hub: Hub, actor: User, request_id: str, *, ip: str | None = None) -> AdminRequestView:
    """A second administrator rejects, or the requester withdraws, a pending request."""
    return await _decide(hub, actor, request_id, approve_it=False, ip=ip)
