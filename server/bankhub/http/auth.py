"""Authentication for HTTP handlers: a bearer token, or a browser's session cookie with CSRF.

Native clients send ``Authorization: Bearer <token>``; nothing else is asked of them.

Browsers hold the same bearer token in the HttpOnly cookie :data:`SESSION_COOKIE` (set by
``POST /v1/web/sessions``, ``SameSite=Strict``, ``Secure`` under TLS), so page script never
sees it. A cookie is sent by the browser on its own, so a cookie-authenticated request with
an unsafe method (anything but GET, HEAD, OPTIONS) must also prove it comes from the hub's
own pages, or it is refused with 403 ``csrf_failed`` before anything is looked up:

* header ``X-CSRF-Token`` equal to :func:`csrf_token` of the session token. The value is
  derived from the token (SHA-256 under a fixed label), so nothing new is stored and a page
  learns it only from ``POST /v1/web/sessions`` / ``GET /v1/web/session``; it does not
  reveal the token (nor the token hash the database keeps, which is a different digest);
* an ``Origin`` header, when sent, that is the hub's own origin or one of
  ``BANKHUB_ALLOWED_ORIGINS``;
* a ``Sec-Fetch-Site`` header, when sent, of ``same-origin`` (any other value only with an
  ``Origin`` listed in ``BANKHUB_ALLOWED_ORIGINS``).

A route that hands out what only the audited compliance path may (message text, an export's
download) is declared ``audited_read``: there a cookie-authenticated GET must also come from the
hub's own page (:func:`check_audited_read`), so a same-site page cannot make an officer's browser
read — and write audit rows — in the officer's name.

When a request carries both, the ``Authorization`` header wins and the cookie is ignored.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import TYPE_CHECKING

from starlette.requests import Request

from ..actions import sessions as session_actions
from ..actions.errors import ActionError
from ..actions.limits import API_PER_USER, enforce
from ..models import Session

if TYPE_CHECKING:
    from ..hub import Hub

__all__ = [
    "require_session",
    "SESSION_COOKIE",
    "CSRF_HEADER",
    "csrf_token",
    "cookie_token",
    "check_browser_origin",
    "check_audited_read",
    "session_cookie",
    "cleared_cookie",
]

SESSION_COOKIE = "bankhub_session"
CSRF_HEADER = "X-CSRF-Token"
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_CSRF_LABEL = b"bankhub csrf v1\x00"


def csrf_token(token: str) -> str:
    """The CSRF token of the session whose bearer token is ``token`` (URL-safe, 43 characters)."""
    digest = hashlib.sha256(_CSRF_LABEL + token.encode("utf-8")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def _is_tls(request: Request) -> bool:
    return request.url.scheme in ("https", "wss")


def session_cookie(request: Request, token: str) -> str:
    """The ``Set-Cookie`` value that hands the browser its session (a session cookie: no Max-Age)."""
    secure = "; Secure" if _is_tls(request) else ""
    return f"{SESSION_COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/{secure}"


def cleared_cookie(request: Request) -> str:
    """The ``Set-Cookie`` value that removes the session cookie."""
    secure = "; Secure" if _is_tls(request) else ""
    return f"{SESSION_COOKIE}=; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT; HttpOnly; SameSite=Strict; Path=/{secure}"


def cookie_token(request: Request) -> str | None:
    """The bearer token in the session cookie, if the request has one."""
    token = request.cookies.get(SESSION_COOKIE, "").strip()
    return token or None


def check_browser_origin(hub: Hub, request: Request) -> None:
    """Refuse (403 ``csrf_failed``) a browser request whose ``Origin`` or ``Sec-Fetch-Site``
    says it was made by another site's page."""
    origin = request.headers.get("origin")
    origin_ok = origin is not None and hub.origin_allowed(origin, request.headers.get("host", ""))
    if origin is not None and not origin_ok:
        raise ActionError("csrf_failed", "this Origin may not make this request with the session cookie")
    # a page of the hub itself says same-origin; only an allowlisted origin (another host of the
    # bank's own) may say otherwise
    listed = origin is not None and origin.rstrip("/") in hub.settings.allowed_origins
    site = request.headers.get("sec-fetch-site")
    if site is not None and site != "same-origin" and not listed:
        raise ActionError("csrf_failed", "a request from another site may not use the session cookie")


def check_audited_read(hub: Hub, request: Request) -> None:
    """Refuse (403 ``csrf_failed``) a cookie-authenticated safe-method request to an audited
    read unless the browser vouches the hub's own page made it: ``Sec-Fetch-Site:
    same-origin``, or an ``Origin`` that is the hub's own or allowlisted. A request saying
    neither is refused too: the cookie alone does not prove who asked."""
    check_browser_origin(hub, request)
    origin = request.headers.get("origin")
    if request.headers.get("sec-fetch-site") == "same-origin":
        return
    if origin is not None and hub.origin_allowed(origin, request.headers.get("host", "")):
        return
    raise ActionError("csrf_failed", "an audited read with the session cookie must come from the hub's own page (Sec-Fetch-Site: same-origin)")


async def require_session(hub: Hub, request: Request, *, audited_read: bool = False) -> Session:
    """The caller's active session; raises ``unauthorized`` otherwise. Tokens in URLs are refused.

    A bearer token when ``Authorization`` is sent; else the session cookie, with the CSRF
    checks of the module docstring on unsafe methods (``csrf_failed``, 403) and, for an
    ``audited_read`` route, :func:`check_audited_read` on safe methods too."""
    header = request.headers.get("authorization")
    if header is not None or (token := cookie_token(request)) is None:
        scheme, _, token = (header or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise ActionError("unauthorized", "send Authorization: Bearer <token> (from POST /v1/sessions) or sign in at /app/")
        token = token.strip()
    elif request.method not in _SAFE_METHODS:
        # checked before the token is looked up: a forged request learns nothing and costs nothing
        check_browser_origin(hub, request)
        sent = request.headers.get(CSRF_HEADER.lower(), "")
        if not hmac.compare_digest(sent.encode("utf-8", "replace"), csrf_token(token).encode("ascii")):
            raise ActionError("csrf_failed", f"send the {CSRF_HEADER} header of this session with every unsafe request")
    elif audited_read:
        check_audited_read(hub, request)
    session = await session_actions.authenticate_token(hub, token)
    if session is None:
        raise ActionError("unauthorized", "invalid, expired or revoked token")
    await enforce(hub, f"api:{session.user.id}", API_PER_USER, fail_closed=False)
    return session
