"""Creating users. A new user follows the bank's default official accounts in the same
transaction that creates them (customers the customer accounts, staff also the internal
notice account)."""

from __future__ import annotations

import asyncio
import re
from typing import TYPE_CHECKING

from .. import policy
from ..models import Role, User
from ..passwords import hash_password
from ..storage.accounts import AccountStore
from .audit import record
from .errors import ActionError, require

if TYPE_CHECKING:
    from ..hub import Hub

__all__ = ["USER_CREATED", "create_user", "MIN_PASSWORD_CHARS"]

USER_CREATED = "user.created"
MIN_PASSWORD_CHARS = 10
_USERNAME = re.compile(r"^[a-z0-9][a-z0-9._-]{1,63}$")
_TAG = re.compile(r"^[a-z0-9][a-z0-9:_-]{0,31}$")


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
) -> tuple[User, list[str]]:
    """Create a user in org ``org_code``; returns the user and the accounts they now follow."""
    try:
        new_role = Role(role)
    except ValueError:
        raise ActionError("invalid_request", f"unknown role {role!r}") from None
    if not _USERNAME.match(username):
        raise ActionError("invalid_request", "usernames are 2-64 of a-z 0-9 . _ -, starting with a letter or digit")
    if not 1 <= len(display_name) <= 64:
        raise ActionError("invalid_request", "display_name is 1 to 64 characters")
    if len(password) < MIN_PASSWORD_CHARS:
        raise ActionError("invalid_request", f"passwords have at least {MIN_PASSWORD_CHARS} characters")
    tags = sorted(set(tags or []))
    if len(tags) > 32 or not all(_TAG.match(t) for t in tags):
        raise ActionError("invalid_request", "up to 32 tags of a-z 0-9 : _ -")
    if segment is not None and not _TAG.match(segment):
        raise ActionError("invalid_request", "a segment is 1-32 of a-z 0-9 _ -")
    if new_role is not Role.CUSTOMER and (rm or segment or tags):
        raise ActionError("invalid_request", "only customers have an RM, a segment or tags")
    orgs = await hub.users.org_ids_by_code([org_code])
    if org_code not in orgs:
        raise ActionError("invalid_request", f"no org with code {org_code!r}")
    require(policy.may_create_user(actor, new_role, await hub.users.org_ancestry(orgs[org_code])))
    rm_id = None
    if rm is not None:
        rm_user = await hub.users.by_username(rm)
        if rm_user is None or rm_user.role is not Role.RM:
            raise ActionError("invalid_request", f"{rm!r} is not a relationship manager")
        rm_id = rm_user.id
    password_hash = await asyncio.to_thread(hash_password, password)  # argon2 is slow by design: off the loop
    async with hub.db.transaction("user_create") as conn:
        if await hub.users.by_username(username) is not None:
            raise ActionError("conflict", f"the username {username!r} is taken")
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
    return user, followed
