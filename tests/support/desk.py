"""Helpers for the RM and service-desk tests: extra users, tokens without the login limit,
an authenticated HTTP client."""

from __future__ import annotations

import datetime as dt
from functools import cache

import httpx

from bankhub.ids import new_token, token_hash
from bankhub.models import Role, User
from bankhub.passwords import hash_password
from bankhub.runner import RunningNode

__all__ = ["make_user", "token_for", "api", "org_id"]


@cache
def _password_hash() -> str:
    return hash_password("bankhub-demo")


async def org_id(node: RunningNode, code: str) -> str:
    async with node.hub.db.connection("test_org") as conn:
        found = await conn.fetchval("SELECT id FROM orgs WHERE code = $1", code)
    assert found is not None, code
    return str(found)


async def make_user(node: RunningNode, username: str, role: Role, org: str = "HO", rm: str | None = None) -> User:
    """A user created straight in storage (password ``bankhub-demo``)."""
    rm_id = None
    if rm is not None:
        rm_user = await node.hub.users.by_username(rm)
        assert rm_user is not None
        rm_id = rm_user.id
    async with node.hub.db.transaction("test_user") as conn:
        return await node.hub.users.create_user(
            conn,
            username=username,
            display_name=username.replace(".", " ").title(),
            role=role,
            org_id=await org_id(node, org),
            password_hash=_password_hash(),
            rm_id=rm_id,
        )


async def token_for(node: RunningNode, username: str) -> str:
    """A bearer token for ``username``, minted in storage: sign-ins are rate-limited per
    address, and these tests act as dozens of users."""
    user = await node.hub.users.by_username(username)
    assert user is not None, username
    token = new_token()
    await node.hub.sessions.create(user.id, token_hash(token), dt.timedelta(hours=1), user_agent="tests", ip="127.0.0.1")
    return token


def api(node: RunningNode, token: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=node.http_url, headers={"authorization": f"Bearer {token}"}, timeout=30)
