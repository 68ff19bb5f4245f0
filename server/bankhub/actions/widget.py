"""The embeddable service widget: partners (register, list, enable, rotate; audited) and the
exchange of a partner's signed visitor token for a visitor session (docs/widget.md).

A partner's secret is 32 random bytes, shown once in its printed form (``bhw_`` + base64url)
and stored only wrapped under the active KEK, as a calling system's is. The hub unwraps it
to check a visitor token's HMAC; nothing here logs or records a secret or a token.
"""

from __future__ import annotations

import base64
import datetime as dt
import logging
import secrets
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from .. import policy
from ..crypto import KeyProvider
from ..crypto.keyring import call_provider
from ..hub import Hub
from ..ids import new_token, token_hash
from ..models import User
from ..storage.alert_systems import WrappedSecret
from ..storage.db import Conn, Database
from ..storage.widget import WidgetPartner, WidgetStore
from ..text import is_username
from ..widget import origins as widget_origins
from ..widget import tokens
from . import audit
from .errors import ActionError, require
from .limits import enforce
from .sessions import LoginResult
from ..ratelimit import Limit

__all__ = [
    "PARTNER_ADDED",
    "PARTNER_ENABLED",
    "PARTNER_DISABLED",
    "PARTNER_SECRET_ROTATED",
    "VISITOR_ENTERED",
    "EXCHANGES_PER_IP",
    "secret_text",
    "add_partner",
    "list_partners",
    "set_enabled",
    "rotate_secret",
    "framing_origins",
    "exchange",
]

log = logging.getLogger("bankhub.widget")

PARTNER_ADDED = "widget.partner_added"
PARTNER_ENABLED = "widget.partner_enabled"
PARTNER_DISABLED = "widget.partner_disabled"
PARTNER_SECRET_ROTATED = "widget.partner_secret_rotated"
VISITOR_ENTERED = "widget.visitor_entered"
SECRET_BYTES = 32
_SECRET_PREFIX = "bhw_"
EXCHANGES_PER_IP = Limit(rate=1.0, burst=30)
"""Token exchanges per address (fails closed: it opens sessions)."""

# a throw-away key an unknown partner's token is checked against: it fails like a wrong
# secret, in about the same time
_NO_PARTNER = "bhw_" + secrets.token_urlsafe(32)
_secrets: OrderedDict[tuple[str, bytes], str] = OrderedDict()


def secret_text(raw: bytes) -> str:
    """The printed form of a partner's 32-byte secret; its UTF-8 bytes are the HMAC key."""
    return _SECRET_PREFIX + base64.urlsafe_b64encode(raw).decode().rstrip("=")


async def _new_secret(provider: KeyProvider) -> tuple[WrappedSecret, str]:
    raw = secrets.token_bytes(SECRET_BYTES)
    kek_id, wrapped = await call_provider(provider, provider.wrap, raw)
    return WrappedSecret(kek_id, wrapped), secret_text(raw)


async def _unwrap(provider: KeyProvider, secret: WrappedSecret) -> str:
    """A partner's secret in its printed form (cached, bounded)."""
    key = (secret.kek_id, secret.wrapped)
    cached = _secrets.get(key)
    if cached is not None:
        _secrets.move_to_end(key)
        return cached
    raw = await call_provider(provider, provider.unwrap, secret.kek_id, secret.wrapped)
    text = secret_text(raw)
    _secrets[key] = text
    while len(_secrets) > 1000:
        _secrets.popitem(last=False)
    return text


def _audit(db: Database, action: str, actor: audit.Actor, details: dict[str, Any]) -> Any:
    async def hook(conn: Conn, partner: WidgetPartner) -> None:
        await audit.record(
            db, actor=actor, action=action, target=f"widget_partner:{partner.id}", details={"name": partner.name, **details}, conn=conn
        )

    return hook


def _checked_origins(origins: Sequence[str]) -> list[str]:
    try:
        checked = list(dict.fromkeys(widget_origins.normalise(o) for o in origins))
    except widget_origins.OriginError as exc:
        raise ActionError("invalid_request", str(exc)) from None
    if not 1 <= len(checked) <= widget_origins.MAX_ORIGINS:
        raise ActionError("invalid_request", f"a partner has 1 to {widget_origins.MAX_ORIGINS} origins")
    return checked


async def add_partner(
    db: Database, provider: KeyProvider, name: str, origins: Sequence[str], *, actor: audit.Actor = audit.SYSTEM
) -> tuple[WidgetPartner, str]:
    """Register a partner; returns it and its secret (to be shown once, then forgotten)."""
    if not is_username(name):
        raise ActionError("invalid_request", "a partner name is 2-64 of a-z 0-9 . _ - (starting with a letter or digit)")
    checked = _checked_origins(origins)
    wrapped, text = await _new_secret(provider)
    partner = await WidgetStore(db).create(
        name=name, origins=checked, org_id=None, secret=wrapped,
        audit=_audit(db, PARTNER_ADDED, actor, {"origins": checked, "kek_id": wrapped.kek_id}),
    )
    if partner is None:
        raise ActionError("conflict", f"a widget partner called {name} exists already")
    return partner, text


async def list_partners(db: Database) -> list[WidgetPartner]:
    return await WidgetStore(db).all()


async def set_enabled(
    db: Database,
    name: str,
    enabled: bool,
    *,
    actor: audit.Actor = audit.SYSTEM,
    announce: Callable[[dict[str, list[str]]], Awaitable[None]] | None = None,
) -> WidgetPartner:
    """Enable or disable a partner: a disabled one's frame is 404, its tokens are refused and
    its visitors' sessions end. ``announce`` is given, after the commit, the revoked sessions
    (user id -> session ids) to tell the hubs (:func:`~bankhub.actions.sessions.publish_revoked`);
    without it each node drops them at its next session re-check (docs/security.md)."""
    revoked: dict[str, list[str]] = {}
    partner = await WidgetStore(db).set_enabled(
        name, enabled, audit=_audit(db, PARTNER_ENABLED if enabled else PARTNER_DISABLED, actor, {}), revoked=revoked
    )
    if partner is None:
        raise ActionError("not_found", f"no widget partner called {name}")
    if revoked and announce is not None:
        await announce(revoked)
    return partner


async def rotate_secret(db: Database, provider: KeyProvider, name: str, *, actor: audit.Actor = audit.SYSTEM) -> tuple[WidgetPartner, str]:
    """A new secret for ``name``, in force at once (tokens are short-lived: no grace period)."""
    wrapped, text = await _new_secret(provider)
    partner = await WidgetStore(db).rotate(name, wrapped, audit=_audit(db, PARTNER_SECRET_ROTATED, actor, {"kek_id": wrapped.kek_id}))
    if partner is None:
        raise ActionError("not_found", f"no widget partner called {name}")
    return partner, text


async def framing_origins(hub: Hub, partner_id: str) -> tuple[WidgetPartner, tuple[str, ...]] | None:
    """An enabled partner and the origins this hub honours for it (``frame-ancestors``, and
    the only senders the frame accepts messages from); None for an unknown or disabled
    partner, or one with no origin honoured here."""
    partner = await hub.widget.partner(partner_id)
    if partner is None or not partner.enabled:
        return None
    honoured = widget_origins.honoured(partner.origins, hub.settings.widget_dev_origins == "loopback")
    return (partner, honoured) if honoured else None


async def exchange(hub: Hub, partner_id: str, token: str, *, user_agent: str | None, ip: str | None) -> tuple[LoginResult, WidgetPartner]:
    """Verify a partner's visitor token and open a session for its visitor.

    Checked in this order, each refusal ``401``: the token's form (``invalid_visitor_token``),
    its HMAC under the partner's secret in constant time (an unknown partner is checked
    against a throw-away key, so it fails like a wrong secret), that it names this partner,
    its lifetime and times (``visitor_token_expired``), and its nonce, once
    (``visitor_token_replayed``). Then the partner must be enabled and the visitor active
    (``403``). Exchanges are rate-limited per address (failing closed).
    """
    await enforce(hub, f"widget-exchange:{ip}", EXCHANGES_PER_IP, fail_closed=True)
    try:
        claims, signed, sig = tokens.parse(token)
        creds = await hub.widget.credentials(partner_id)
        key = await _unwrap(hub.keyring.provider, creds.secret) if creds is not None else _NO_PARTNER
        if not tokens.signature_ok([key], signed, sig) or creds is None:
            raise tokens.TokenError("invalid_visitor_token", "signature", "the token's signature does not match (unknown partner or wrong secret)")
        if claims.partner_id != creds.partner.id:
            raise tokens.TokenError("invalid_visitor_token", "partner", "the token was minted for another partner")
        tokens.check_times(claims, time.time(), hub.settings.widget_token_max_lifetime_seconds)
    except tokens.TokenError as exc:
        # never the token: the partner id the page claimed and the reason only
        log.warning("refused a visitor token for partner %r from %s: %s", partner_id[:40], ip, exc.reason)
        raise ActionError(exc.code, exc.message) from None
    partner = creds.partner
    if not partner.enabled:
        raise ActionError("forbidden", "this widget partner is disabled")
    expires = dt.datetime.fromtimestamp(claims.expires_at + tokens.MAX_SKEW_SECONDS, dt.timezone.utc)
    if not await hub.widget.use_nonce(partner.id, claims.nonce, expires):
        log.warning("refused a replayed visitor token of partner %s from %s", partner.name, ip)
        raise ActionError("visitor_token_replayed", "this visitor token was used before: each token opens one session; mint a new one")
    visitor: User = await hub.widget.visitor(partner, claims.visitor_id, claims.name)
    require(policy.may_enter_widget(partner.enabled, visitor))
    bearer = new_token()
    ttl = dt.timedelta(minutes=hub.settings.widget_session_minutes)
    session_id, expires_at = await hub.sessions.create(
        visitor.id, token_hash(bearer), ttl, user_agent=user_agent, ip=ip, max_lifetime=ttl
    )
    await audit.record(
        hub, actor=visitor, action=VISITOR_ENTERED, target=audit.session_target(session_id), ip=ip,
        details={"partner": partner.name},
    )
    return LoginResult(bearer, session_id, expires_at, visitor), partner
