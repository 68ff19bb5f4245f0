"""Creating users and changing roles, with dual control for administrative accounts.

A new user follows the bank's default official accounts in the same transaction that
creates them (customers the customer accounts, staff also the internal notice account).

An account of a role in :data:`bankhub.policy.DUAL_CONTROL_ROLES` (branch and head-office
administrators, who approve notices and other administrators, and compliance officers, who
read any conversation) is never created or granted by one person: the request is filed
(``admin_request.filed``, audited) and carried out only when a second, existing
administrator approves it (:mod:`bankhub.actions.admin_requests`). The operator's
bootstrap (the demo seed) is the only direct way, and it is audited too.
"""

from __future__ import annotations

import asyncio
import datetime as dt

import msgspec

from .. import policy
from ..hub import Hub
from ..models import Role, User
from ..passwords import hash_password
from ..text import is_tag, is_username
from ..storage.accounts import AccountStore
from ..storage.admin_requests import AdminRequestRow, AdminRequestStore, RequestPending
from ..storage.users import UsernameTaken
from . import groups
from . import sessions as session_actions
from .audit import ADMIN_REQUEST_EXPIRED, ADMIN_REQUEST_FILED, SYSTEM, record
from .errors import ActionError, require

__all__ = [
    "USER_CREATED",
    "MIN_PASSWORD_CHARS",
    "REQUEST_TTL",
    "AdminRequestView",
    "request_view",
    "create_user",
    "change_role",
]

USER_CREATED = "user.created"
MIN_PASSWORD_CHARS = 10
REQUEST_TTL = dt.timedelta(hours=72)  # a dual-control request not decided by then expires


class AdminRequestView(msgspec.Struct, omit_defaults=True):
    """A dual-control request as administrators see it (never the password)."""

    id: str
    kind: str  # create_user | change_role
    status: str  # pending | approved | rejected | expired
    username: str
    role: str
    org: str  # org code
    requested_by: str  # username
    created_at: dt.datetime
    expires_at: dt.datetime
    display_name: str | None = None
    from_role: str | None = None
    decided_by: str | None = None
    decided_at: dt.datetime | None = None
    user_id: str | None = None  # the account created or changed, once approved


def request_view(r: AdminRequestRow) -> AdminRequestView:
    return AdminRequestView(
        id=r.id,
        kind=r.kind,
        status=r.status,
        username=r.username,
        role=r.role,
        org=r.org_code,
        requested_by=r.requested_by_username,
        created_at=r.created_at,
        expires_at=r.expires_at,
        display_name=r.display_name,
        from_role=r.from_role,
        decided_by=r.decided_by_username,
        decided_at=r.decided_at,
        user_id=r.result_user_id,
    )


async def _file(
    hub: Hub,
    actor: User,
    *,
    kind: str,
    username: str,
    role: Role,
    org_id: str,
    ip: str | None,
    target: User | None = None,
    display_name: str | None = None,
    password_hash: str | None = None,
) -> AdminRequestView:
    pending = ActionError("conflict", f"a request about {username!r} is already waiting for approval")
    async with hub.db.transaction("admin_request_file") as conn:
        # a lapsed request no longer blocks: it is marked expired (and audited) first
        for lapsed in await AdminRequestStore.expire_lapsed(conn, username):
            await record(
                hub,
                actor=SYSTEM,
                action=ADMIN_REQUEST_EXPIRED,
                target=f"admin_request:{lapsed.id}",
                details={"kind": lapsed.kind, "username": lapsed.username, "role": lapsed.role, "org": lapsed.org_code,
                         "requested_by": lapsed.requested_by},
                conn=conn,
            )
        if await AdminRequestStore.live_for_username(conn, username):
            raise pending
        try:  # the unique index decides between filings running at once
            row = await AdminRequestStore.create(
                conn,
                kind=kind,
                requested_by=actor.id,
                username=username,
                role=role.value,
                org_id=org_id,
                ttl=REQUEST_TTL,
                target_user_id=None if target is None else target.id,
                from_role=None if target is None else target.role.value,
                display_name=display_name,
                password_hash=password_hash,
            )
        except RequestPending:
            raise pending from None
        await record(
            hub,
            actor=actor,
            action=ADMIN_REQUEST_FILED,
            target=f"admin_request:{row.id}",
            ip=ip,
            details={
                "kind": kind,
                "username": username,
                "role": role.value,
                "org": row.org_code,
                "from_role": row.from_role,
                "expires_at": row.expires_at.isoformat(),
            },
            conn=conn,
        )
    return request_view(row)


async def create_user(
    hub: Hub,
    actor: User,
    *,
    username: str,
    display_name: str,
    role: str,
    org_code: str,
    password: str,
    rm: str | None = None,
    segment: str | None = None,
    tags: list[str] | None = None,
    ip: str | None = None,
) -> tuple[User, list[str]] | AdminRequestView:
    """Create a user in org ``org_code``; returns the user and the accounts they now follow
    — or, for a role under dual control, the pending request a second administrator decides."""
    try:
        new_role = Role(role)
    except ValueError:
        raise ActionError("invalid_request", f"unknown role {role!r}") from None
    if not is_username(username):
        raise ActionError("invalid_request", "usernames are 2-64 of a-z 0-9 . _ -, starting with a letter or digit")
    if not 1 <= len(display_name) <= 64:
        raise ActionError("invalid_request", "display_name is 1 to 64 characters")
    if len(password) < MIN_PASSWORD_CHARS:
        raise ActionError("invalid_request", f"passwords have at least {MIN_PASSWORD_CHARS} characters")
    tags = sorted(set(tags or []))
    if len(tags) > 32 or not all(is_tag(t) for t in tags):
        raise ActionError("invalid_request", "up to 32 tags of a-z 0-9 : _ -")
    if segment is not None and not is_tag(segment):
        raise ActionError("invalid_request", "a segment is 1-32 of a-z 0-9 _ -")
    if new_role is not Role.CUSTOMER and (rm or segment or tags):
        raise ActionError("invalid_request", "only customers have an RM, a segment or tags")
    orgs = await hub.users.org_ids_by_code([org_code])
    if org_code not in orgs:
        raise ActionError("invalid_request", f"no org with code {org_code!r}")
    org_path = await hub.users.org_ancestry(orgs[org_code])
    # the actor first: a caller who may not create this user learns nothing from the RM's
    # lookup below (whether a username exists, or what it is)
    if (early := policy.may_create_user(actor, new_role, org_path)).code != "approval_required":
        require(early)
    rm_user = None if rm is None else await hub.users.by_username(rm)
    if rm is not None and rm_user is None:  # the same answer as an RM out of reach (policy)
        raise ActionError("invalid_request", f"{rm!r} is not an active relationship manager you administer")
    rm_path = () if rm_user is None else await hub.users.org_ancestry(rm_user.org_id)
    # every principal: the actor, the new user's org and role, and the RM
    decision = policy.may_create_user(actor, new_role, org_path, rm_user, rm_path)
    rm_id = None if rm_user is None else rm_user.id
    if decision.code != "approval_required":
        require(decision)
    if await hub.users.by_username(username) is not None:
        raise ActionError("conflict", f"the username {username!r} is taken")
    password_hash = await asyncio.to_thread(hash_password, password)  # argon2 is slow by design: off the loop
    if decision.code == "approval_required":
        return await _file(
            hub,
            actor,
            kind="create_user",
            username=username,
            role=new_role,
            org_id=orgs[org_code],
            ip=ip,
            display_name=display_name,
            password_hash=password_hash,
        )
    async with hub.db.transaction("user_create") as conn:
        try:
            user = await hub.users.create_user(
                conn,
                username=username,
                display_name=display_name,
                role=new_role,
                org_id=orgs[org_code],
                password_hash=password_hash,
                rm_id=rm_id,
                segment=segment,
                tags=tags,
            )
        except UsernameTaken:  # created by a concurrent request since the check above
            raise ActionError("conflict", f"the username {username!r} is taken") from None
        followed = await AccountStore.follow_defaults(conn, user.id, new_role)
        await record(
            hub,
            actor=actor,
            action=USER_CREATED,
            target=user,
            ip=ip,
            details={"role": new_role.value, "org": org_code, "rm": rm_id, "auto_followed": followed},
            conn=conn,
        )
    await groups.reconcile_user(hub, user.id)  # staff join the org groups of their org tree
    return user, followed


async def change_role(hub: Hub, actor: User, username: str, role: str, *, ip: str | None = None) -> User | AdminRequestView:
    """An administrator changes a user's role (all of that user's sessions end at once) —
    or, into a role under dual control, files the request a second administrator decides."""
    try:
        new_role = Role(role)
    except ValueError:
        raise ActionError("invalid_request", f"unknown role {role!r}") from None
    target = await hub.users.by_username(username)
    if target is None:
        raise ActionError("not_found", "no such user")
    decision = policy.may_change_role(actor, target, new_role, await hub.users.org_ancestry(target.org_id))
    if decision.code != "approval_required":
        require(decision)
        changed = await session_actions.apply_role_change(hub, actor, target, new_role)
        await groups.reconcile_user(hub, changed.id)  # a customer made staff joins org groups, and back
        return changed
    return await _file(hub, actor, kind="change_role", username=username, role=new_role, org_id=target.org_id, ip=ip, target=target)
