"""Sign-in, sessions and WebSocket tickets; password and role changes that cut sessions.

Every revocation is followed by a :class:`~bankhub.signals.RevokeSignal` on the user's
channel, so the sockets of the revoked sessions close (1008) on every node at once; each
node's periodic re-check (:meth:`Hub.recheck_sessions`) is the safety net if a signal is lost.
"""

from __future__ import annotations

import datetime as dt
import time
import uuid
from collections.abc import Mapping, Sequence

from .. import policy
from ..hub import Hub
from ..ids import new_token, token_hash
from ..models import Role, Session, User
from ..passwords import hash_password, needs_rehash, verify_password
from ..broker import BROADCAST_CHANNEL, user_channel
from ..outbox import Emitted, Outbox, Transaction
from ..signals import PrincipalSignal, RevokeSignal
from ..storage.db import Conn
from ..models import SessionInfo
from . import audit
from .errors import ActionError, require
from .limits import LOGIN_PER_IP, LOGIN_PER_USERNAME, PASSWORD_PER_USER, TICKETS_PER_USER, enforce

__all__ = [
    "end_sessions",
    "LoginResult",
    "login",
    "logout",
    "refresh",
    "list_sessions",
    "revoke_session",
    "revoke_all_sessions",
    "change_password",
    "apply_role_change",
    "signal_principal_changed",
    "publish_revoked",
    "authenticate_token",
    "issue_ws_ticket",
    "redeem_ws_ticket",
    "MAX_FAILED_LOGINS",
    "LOCKOUT",
]

MAX_FAILED_LOGINS = 5
LOCKOUT = dt.timedelta(minutes=15)
MIN_PASSWORD_CHARS = 12


class LoginResult:
    def __init__(self, token: str, session_id: str, expires_at: dt.datetime, user: User) -> None:
        self.token = token
        self.session_id = session_id
        self.expires_at = expires_at
        self.user = user


def _lifetimes(hub: Hub) -> tuple[dt.timedelta, dt.timedelta]:
    """(ttl, absolute maximum) of a session, from settings."""
    s = hub.settings
    return dt.timedelta(hours=s.session_ttl_hours), dt.timedelta(hours=s.session_max_lifetime_hours)


async def _open_session(hub: Hub, user: User, *, user_agent: str | None, ip: str | None) -> LoginResult:
    token = new_token()
    ttl, max_lifetime = _lifetimes(hub)
    session_id, expires = await hub.sessions.create(
        user.id, token_hash(token), ttl, user_agent=user_agent, ip=ip, max_lifetime=max_lifetime
    )
    return LoginResult(token, session_id, expires, user)


async def _audit_login_failed(
    hub: Hub, username: str, user: User | None, outcome: str, ip: str | None, *, conn: Conn | None = None
) -> None:
    attempted = username[:128]  # never the password
    await audit.record(
        hub,
        conn=conn,
        actor=audit.ANONYMOUS,
        action=audit.SESSION_LOGIN_FAILED,
        target=audit.user_target(user) if user else f"username:{attempted}",
        ip=ip,
        details={"username": attempted, "outcome": outcome},
    )


async def login(hub: Hub, username: str, password: str, *, user_agent: str | None, ip: str | None) -> LoginResult:
    """Check the password; on success open a session and return its bearer token (shown once).

    Rate-limited per address and per username (failing closed). :data:`MAX_FAILED_LOGINS`
    failures in a row lock the account for :data:`LOCKOUT` (audited ``user.locked``); while it
    is locked even the right password is refused and nothing is counted; once the lock lapses
    the count starts again from zero, and a successful sign-in resets it.

    Every refusal -- unknown username, disabled account, wrong password, locked account --
    answers the same ``unauthorized`` "wrong username or password" after the same work (one
    Argon2 verification, against a dummy hash for an unknown name; one failure-count
    statement; one ``session.login_failed`` audit row), so an anonymous caller learns neither
    whether a username exists nor whether it is locked. The owner of a locked account learns
    it from the bank (the lock is in the audit log).
    """
    await enforce(hub, f"login:ip:{ip}", LOGIN_PER_IP, fail_closed=True)
    await enforce(hub, f"login:user:{username.lower()[:64]}", LOGIN_PER_USERNAME, fail_closed=True)
    found = await hub.users.credentials(username)
    # verified before anything else is looked at: locked and unknown accounts cost the same
    ok = await verify_password(found.password_hash if found else None, password)
    if not ok or found is None or found.locked or found.user.disabled:
        if found is None:
            outcome = "unknown_user"
        elif found.locked:
            outcome = "locked"
        elif found.user.disabled:
            outcome = "disabled"
        else:
            outcome = "bad_password"
        # one transaction for every kind of failure: the count, its audit row and, when this
        # failure locks the account, the lock's audit row commit together (no lock unaudited)
        async with hub.db.transaction("login_failed") as conn:
            locked_now = await hub.users.login_failed(username, max_failures=MAX_FAILED_LOGINS, lock_for=LOCKOUT, conn=conn)
            await _audit_login_failed(hub, username, found.user if found else None, outcome, ip, conn=conn)
            if locked_now is not None and found is not None:
                await audit.record(
                    hub, actor=audit.SYSTEM, action=audit.USER_LOCKED, target=found.user, ip=ip, conn=conn,
                    reason=f"{MAX_FAILED_LOGINS} failed sign-ins in a row", details={"minutes": int(LOCKOUT.total_seconds() // 60)},
                )
        raise ActionError("unauthorized", "wrong username or password")
    user = found.user
    await hub.users.login_succeeded(user.id)
    if needs_rehash(found.password_hash):
        await hub.users.set_password_hash(user.id, hash_password(password))
    result = await _open_session(hub, user, user_agent=user_agent, ip=ip)
    # raises if the row cannot be written: the token is then never handed out
    await audit.record(
        hub, actor=user, action=audit.SESSION_LOGIN, target=audit.session_target(result.session_id), ip=ip,
        details={"user_agent": (user_agent or "")[:256]},
    )
    return result


async def authenticate_token(hub: Hub, token: str) -> Session | None:
    """The active session a bearer token belongs to, or None.

    Answered from the node's session cache (:mod:`bankhub.session_cache`, keyed by the
    token's hash) when it holds the session, else from Postgres, and then kept there. The
    cache is used only while the broker link is up: revocations reach it as
    :class:`~bankhub.signals.PrincipalSignal` on the broadcast channel."""
    if not token or len(token) > 256:
        return None
    digest = token_hash(token)
    cache = hub.session_cache
    if not cache.enabled:
        return await hub.sessions.active_by_token(digest)
    connected = hub.broker.connected
    if connected:
        hit = cache.get(digest, time.monotonic(), _utcnow())
        if hit is not None:
            return hit
    ticket = cache.begin()
    session = await hub.sessions.active_by_token(digest)
    # a broker link that dropped meanwhile flushed the cache and moved the ticket floor
    if session is not None and connected and hub.broker.connected:
        cache.fill(ticket, digest, session, session.user.id, session.expires_at, time.monotonic(), _utcnow())
    return session


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


async def end_sessions(
    hub: Hub,
    actor: audit.Actor,
    user_id: str,
    *,
    reason: str,
    told: str,
    only: str | None = None,
    keep: str | None = None,
    audit_target: str | None = None,
    ip: str | None = None,
) -> list[str]:
    """Revoke the user's session ``only`` — or all of them but ``keep`` — storing ``reason``;
    after the commit, close their sockets on every node (``told``: the close reason), then
    audit it. Returns the revoked ids (nothing is signalled or audited when there are none)."""
    async with hub.transaction("session_revoke") as tx:
        if only is not None:
            revoked = [only] if await hub.sessions.revoke(tx.conn, only, reason) else []
        else:
            revoked = await hub.sessions.revoke_all(tx.conn, user_id, reason, except_session=keep)
        if revoked:
            _signal_revoked(tx, user_id, revoked, told)
    if revoked:
        # this node at once, before the caller answers (the others on the broadcast signal)
        hub.session_cache.forget_user(user_id)
        await _audit_revoked(hub, actor, user_id, revoked, told, ip, audit_target)
    return revoked


def signal_principal_changed(tx: Transaction, user_id: str) -> None:
    """Once ``tx`` has committed, every node drops its cached sessions of the user (a change
    of what the user may do: role, org, relationship manager, follows)."""
    tx.emit(BROADCAST_CHANNEL, PrincipalSignal(user_id=user_id))


async def publish_revoked(outbox: Outbox, revoked: Mapping[str, Sequence[str]], told: str) -> None:
    """For sessions revoked without a hub (the CLI): the signals a hub sends after such a
    commit (:func:`end_sessions`), published through ``outbox`` — the sockets close and every
    node drops the users' cached sessions."""
    items: list[Emitted] = []
    for user_id, session_ids in revoked.items():
        items.append((user_channel(user_id), RevokeSignal(user_id=user_id, session_ids=list(session_ids), reason=told)))
        items.append((BROADCAST_CHANNEL, PrincipalSignal(user_id=user_id)))
    await outbox.publish(items, what="sessions revoked")


def _signal_revoked(tx: Transaction, user_id: str, session_ids: list[str], told: str) -> None:
    """Once ``tx`` has committed, the sockets of the revoked sessions close on every node."""
    tx.emit(user_channel(user_id), RevokeSignal(user_id=user_id, session_ids=session_ids, reason=told))
    # every node, connected to the user or not, drops its cached sessions of the user
    tx.emit(BROADCAST_CHANNEL, PrincipalSignal(user_id=user_id))


async def _audit_revoked(
    hub: Hub,
    actor: audit.Actor,
    user_id: str,
    session_ids: list[str],
    told: str,
    ip: str | None,
    audit_target: str | None = None,
) -> None:
    # after the commit, in its own transaction: a revocation never waits for, nor is undone
    # by, the audit chain
    await audit.record(
        hub,
        actor=actor,
        action=audit.SESSION_REVOKED,
        target=audit_target or (audit.session_target(session_ids[0]) if len(session_ids) == 1 else f"user:{user_id}"),
        reason=told,
        ip=ip,
        details={"sessions": session_ids},
    )


async def logout(hub: Hub, session: Session, *, ip: str | None = None) -> None:
    """Revoke the session and close its sockets on every node."""
    await end_sessions(hub, session, session.user.id, reason="signed out", told="signed out", only=session.id, ip=ip)


async def refresh(hub: Hub, session: Session, *, user_agent: str | None, ip: str | None) -> LoginResult:
    """Trade the current token for a fresh one; the old one stops working.

    A refreshed session keeps the time of the password sign-in it descends from and expires
    at ``min(now + session_ttl_hours, signed_in_at + session_max_lifetime_hours)``. A session
    that already ends at that absolute deadline cannot be extended: ``reauthentication_required``
    (the token keeps working until the deadline; then sign in with the password again). Of two
    refreshes of one token, one succeeds and the other gets ``unauthorized``.
    """
    token = new_token()
    ttl, max_lifetime = _lifetimes(hub)
    async with hub.transaction("session_refresh") as tx:
        done = await hub.sessions.refresh(tx.conn, session.id, token_hash(token), ttl, max_lifetime, user_agent=user_agent, ip=ip)
        if done.outcome == "deadline":
            hours = f"{hub.settings.session_max_lifetime_hours:g}"
            raise ActionError(
                "reauthentication_required",
                f"a session lasts at most {hours} hours from the password sign-in; sign in again with the password",
            )
        if done.session_id is None or done.expires_at is None:
            raise ActionError("unauthorized", "invalid, expired or revoked token")
        _signal_revoked(tx, session.user.id, [session.id], "session refreshed: reconnect with the new token")
    hub.session_cache.forget_user(session.user.id)
    await _audit_revoked(hub, session, session.user.id, [session.id], "session refreshed: reconnect with the new token", ip)
    return LoginResult(token, done.session_id, done.expires_at, session.user)


async def list_sessions(
    hub: Hub, session: Session, *, after: tuple[dt.datetime, uuid.UUID] | None = None, limit: int | None = None
) -> list[SessionInfo]:
    """My active sessions, newest first: all, or up to ``limit`` after the sort key ``after``
    (``(created_at, id)`` of the last session of the previous page)."""
    return await hub.sessions.list_active(session.user.id, after=after, limit=limit)


async def revoke_session(hub: Hub, session: Session, target_id: str) -> None:
    """Revoke one of my own sessions (e.g. a lost phone)."""
    if await hub.sessions.owner(target_id) != session.user.id:
        raise ActionError("not_found", "no such session")
    await end_sessions(hub, session, session.user.id, reason="revoked by owner", told="session revoked", only=target_id)


async def revoke_all_sessions(hub: Hub, session: Session, *, keep_current: bool) -> int:
    revoked = await end_sessions(
        hub, session, session.user.id, reason="revoked by owner", told="all sessions revoked", keep=session.id if keep_current else None
    )
    return len(revoked)


async def change_password(hub: Hub, session: Session, current: str, new: str, *, ip: str | None) -> int:
    """Change my password; every other session of mine is revoked. Returns how many."""
    await enforce(hub, f"password:{session.user.id}", PASSWORD_PER_USER, fail_closed=True)
    if len(new) < MIN_PASSWORD_CHARS or len(new) > 256:
        raise ActionError("invalid_request", f"a password has {MIN_PASSWORD_CHARS} to 256 characters")
    found = await hub.users.credentials(session.user.username)
    if found is None or not await verify_password(found.password_hash, current):
        raise ActionError("forbidden", "the current password is wrong")
    await hub.users.set_password_hash(session.user.id, hash_password(new))
    await audit.record(hub, actor=session, action=audit.USER_PASSWORD_CHANGED, target=session.user, ip=ip)
    revoked = await end_sessions(
        hub, session, session.user.id, reason="password changed", told="password changed", keep=session.id, ip=ip
    )
    return len(revoked)


async def apply_role_change(hub: Hub, actor: User, target: User, new_role: Role) -> User:
    """Give ``target`` ``new_role`` (the caller has checked the policy): audited, and all of
    ``target``'s sessions end at once so no token carries the old role.

    The role, its audit row and the :class:`~bankhub.signals.PrincipalSignal` commit
    together: no node serves the old role from its session cache once the role has
    committed, even if the revocation after it fails."""
    async with hub.transaction("user_role_change") as tx:
        await hub.users.set_role_in(tx.conn, target.id, new_role)
        await audit.record(
            hub, actor=actor, action=audit.USER_ROLE_CHANGED, target=target, details={"from": target.role.value, "to": new_role.value},
            conn=tx.conn,
        )
        signal_principal_changed(tx, target.id)
    hub.session_cache.forget_user(target.id)
    await end_sessions(hub, actor, target.id, reason="role changed", told="role changed: sign in again")
    updated = await hub.users.by_username(target.username)
    assert updated is not None
    return updated


async def issue_ws_ticket(hub: Hub, session: Session) -> str:
    """A single-use ticket, valid for ``ws_ticket_ttl_seconds``, for browsers' WebSocket URL."""
    require(policy.may_issue_ws_ticket(session.user))
    await enforce(hub, f"ticket:{session.user.id}", TICKETS_PER_USER, fail_closed=True)
    ticket = new_token()
    await hub.sessions.create_ticket(session.id, token_hash(ticket), dt.timedelta(seconds=hub.settings.ws_ticket_ttl_seconds))
    return ticket


async def redeem_ws_ticket(hub: Hub, ticket: str) -> Session | None:
    if not ticket or len(ticket) > 256:
        return None
    return await hub.sessions.consume_ticket(token_hash(ticket))
