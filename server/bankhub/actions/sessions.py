"""Sign-in, sign-out and WebSocket tickets."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

from .. import policy
from ..ids import new_token, token_hash
from ..models import Session, User
from ..passwords import hash_password, needs_rehash, verify_password
from ..signals import RevokeSignal
from .errors import ActionError, require

if TYPE_CHECKING:
    from ..hub import Hub

__all__ = ["login", "logout", "authenticate_token", "issue_ws_ticket", "redeem_ws_ticket", "LoginResult"]


class LoginResult:
    def __init__(self, token: str, session_id: str, expires_at: dt.datetime, user: User) -> None:
        self.token = token
        self.session_id = session_id
        self.expires_at = expires_at
        self.user = user


async def login(hub: Hub, username: str, password: str, *, user_agent: str | None, ip: str | None) -> LoginResult:
    """Check the password; on success open a session and return its bearer token (shown once)."""
    found = await hub.users.credentials(username)
    ok = await verify_password(found[1] if found else None, password)
    if not ok or found is None or found[0].disabled:
        raise ActionError("unauthorized", "wrong username or password")
    user, stored = found
    if needs_rehash(stored):
        await hub.users.set_password_hash(user.id, hash_password(password))
    token = new_token()
    ttl = dt.timedelta(hours=hub.settings.session_ttl_hours)
    session_id, expires = await hub.sessions.create(user.id, token_hash(token), ttl, user_agent=user_agent, ip=ip)
    return LoginResult(token, session_id, expires, user)


async def authenticate_token(hub: Hub, token: str) -> Session | None:
    """The active session a bearer token belongs to, or None."""
    if not token or len(token) > 256:
        return None
    return await hub.sessions.active_by_token(token_hash(token))


async def logout(hub: Hub, session: Session) -> None:
    """Revoke the session and close its sockets on every node."""
    await hub.sessions.revoke(session.id)
    await hub.publish_revoke(RevokeSignal(user_id=session.user.id, session_id=session.id, reason="signed out"))


async def issue_ws_ticket(hub: Hub, session: Session) -> str:
    """A single-use ticket, valid for ``ws_ticket_ttl_seconds``, for browsers' WebSocket URL."""
    require(policy.may_issue_ws_ticket(session.user))
    ticket = new_token()
    await hub.sessions.create_ticket(session.id, token_hash(ticket), dt.timedelta(seconds=hub.settings.ws_ticket_ttl_seconds))
    return ticket


async def redeem_ws_ticket(hub: Hub, ticket: str) -> Session | None:
    if not ticket or len(ticket) > 256:
        return None
    return await hub.sessions.consume_ticket(token_hash(ticket))
