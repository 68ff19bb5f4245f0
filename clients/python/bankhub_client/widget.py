"""The hub's embeddable service widget: minting visitor tokens (a partner's backend; no I/O)
and exchanging one for a visitor session (:func:`open_visitor_session`).

A partner site embeds the hub's service chat with ``/widget/loader.js`` (``docs/widget.md``).
The page must not say who its visitor is (anyone can edit a page): the partner's backend,
which knows its signed-in user, mints a short-lived token the hub verifies::

    from bankhub_client.widget import mint_visitor_token

    token = mint_visitor_token(secret, partner_id, visitor_id=str(user.id), name=user.nickname)
    # hand it to the page (e.g. from the URL the loader's data-token-url names)

The format is ``bhw1.<payload>.<signature>``: ``payload`` the base64url (no padding) of a
UTF-8 JSON object ``{"p": partner id, "v": visitor id, "n": display name, "iat": Unix
seconds, "exp": Unix seconds, "nonce": 16-64 of A-Z a-z 0-9 _ -}`` and ``signature`` the
base64url HMAC-SHA256 of ``bhw1.<payload>`` keyed with the UTF-8 bytes of the secret as
``bankhub widget add-partner`` printed it. The hub accepts each token once, for at most its
``BANKHUB_WIDGET_TOKEN_MAX_LIFETIME_SECONDS`` (default 300), with 30 seconds of clock skew.

Whoever holds the token (the hub's widget frame, a native app's own chat screen) exchanges it
for a visitor session with :func:`open_visitor_session` (``POST /v1/widget/sessions``); the
visitor may use the service desk only.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
import time

import httpx

from .api import Api
from .models import Session

__all__ = ["PREFIX", "VisitorSession", "mint_visitor_token", "open_visitor_session", "token_partner_id"]

PREFIX = "bhw1"
_VISITOR = re.compile(r"[A-Za-z0-9_.:@-]{1,128}")
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def mint_visitor_token(
    secret: str,
    partner_id: str,
    visitor_id: str,
    name: str,
    *,
    ttl: int = 120,
    now: int | None = None,
    nonce: str | None = None,
) -> str:
    """A signed visitor token for ``visitor_id`` (the partner's own id for its user, 1-128 of
    ``A-Z a-z 0-9 _ - . : @``) shown as ``name`` (1-64 characters, one line), valid ``ttl``
    seconds. Mint a new one for every widget load: the hub exchanges each token once."""
    if not _UUID.fullmatch(partner_id):
        raise ValueError("partner_id is the partner's id (a lower-case UUID)")
    if not _VISITOR.fullmatch(visitor_id):
        raise ValueError("visitor_id is 1-128 of A-Z a-z 0-9 _ - . : @")
    if not 1 <= len(name.strip()) <= 64 or any(c in name for c in "\r\n\u2028\u2029"):
        raise ValueError("name is 1-64 characters on one line")
    if ttl < 1:
        raise ValueError("ttl is at least one second")
    issued = int(time.time()) if now is None else now
    payload = {"p": partner_id, "v": visitor_id, "n": name, "iat": issued, "exp": issued + ttl, "nonce": nonce or secrets.token_urlsafe(18)}
    body = _b64(json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))
    signed = f"{PREFIX}.{body}"
    mac = hmac.new(secret.encode("utf-8"), signed.encode("ascii"), hashlib.sha256).digest()
    return f"{signed}.{_b64(mac)}"


class VisitorSession(Session, frozen=True):
    """A visitor's session (``POST /v1/widget/sessions``): a :class:`~bankhub_client.Session`
    (``token`` for :class:`~bankhub_client.Api` and :class:`~bankhub_client.Client`; keep it in
    memory) and ``partner``, the partner's name."""

    partner: str


def token_partner_id(token: str) -> str:
    """The partner id a visitor token names (its payload's ``p``; not verified: the hub does that)."""
    parts = token.split(".")
    if len(parts) != 3 or parts[0] != PREFIX:
        raise ValueError(f"not a {PREFIX} visitor token")
    try:
        payload = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except ValueError as exc:  # binascii.Error and json.JSONDecodeError are ValueErrors
        raise ValueError("the visitor token's payload is not base64url JSON") from exc
    partner_id = payload.get("p") if isinstance(payload, dict) else None
    if not isinstance(partner_id, str) or not _UUID.fullmatch(partner_id):
        raise ValueError("the visitor token names no partner id")
    return partner_id


async def open_visitor_session(
    base_url: str,
    token: str,
    partner_id: str | None = None,
    *,
    timeout: float = 10.0,
    transport: httpx.AsyncBaseTransport | None = None,
) -> VisitorSession:
    """Exchange a visitor token for a visitor session (``POST /v1/widget/sessions``, no
    cookie). ``partner_id`` defaults to the one the token names. Each token is exchanged
    once. Raises :class:`~bankhub_client.ApiError`: 401 ``invalid_visitor_token``,
    ``visitor_token_expired`` or ``visitor_token_replayed``; 403 ``forbidden`` (the partner
    or visitor is disabled); 400 for a malformed request; 429."""
    body = {"partner_id": token_partner_id(token) if partner_id is None else partner_id, "token": token}
    async with Api(base_url, timeout=timeout, transport=transport) as api:
        response = await api._request("POST", "/v1/widget/sessions", json=body, auth=False)
        return api._decode(response, VisitorSession)
