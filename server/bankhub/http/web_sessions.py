"""Browser sessions: sign in with a password and get the session as an HttpOnly cookie.

``POST /v1/web/sessions`` checks the password exactly as ``POST /v1/sessions`` (same limits,
lockout and refusals) and answers the user and the session's CSRF token; the bearer token
itself travels only in ``Set-Cookie`` (:data:`~bankhub.http.auth.SESSION_COOKIE`, HttpOnly,
SameSite=Strict, Secure under TLS), so no page script, storage or URL ever holds it.

``GET /v1/web/session`` lets a reloaded page find its session again (the CSRF token lives in
page memory only). Sign-out is ``DELETE /v1/sessions/current`` with the cookie and the CSRF
header; it clears the cookie. See :mod:`bankhub.http.auth` for the CSRF rules.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from ..actions import sessions as session_actions
from ..actions.errors import ActionError
from ..text import header_line
from .auth import check_browser_origin, cleared_cookie, cookie_token, csrf_token, session_cookie
from .problems import json_response, problem
from .routes import Handler, LoginBody, _body, _client_ip, _hub, _user_json

__all__ = ["ROUTES", "OPENAPI_TYPES", "WebSessionOut", "openapi_paths"]


class WebUserOut(msgspec.Struct):
    id: str
    username: str
    display_name: str
    role: str
    org_id: str
    rm_id: str | None


class WebSessionOut(msgspec.Struct):
    """A browser session: who is signed in, the CSRF token for unsafe requests, when it ends."""

    user: WebUserOut
    csrf_token: str
    expires_at: str


def _session_json(token: str, user: Any, expires_at: Any) -> dict[str, Any]:
    return {"user": _user_json(user), "csrf_token": csrf_token(token), "expires_at": expires_at.isoformat()}


async def web_login(request: Request) -> Response:
    hub = _hub(request)
    # login CSRF: another site's page must not sign this browser in to an account of its choosing
    check_browser_origin(hub, request)
    body: LoginBody = await _body(request, LoginBody)
    result = await session_actions.login(
        hub, body.username, body.password, user_agent=header_line(request.headers.get("user-agent")), ip=_client_ip(request)
    )
    response = json_response(_session_json(result.token, result.user, result.expires_at), 201)
    response.headers["Set-Cookie"] = session_cookie(request, result.token)
    response.headers["Cache-Control"] = "no-store"
    return response


async def web_session(request: Request) -> Response:
    hub = _hub(request)
    token = cookie_token(request)
    session = await session_actions.authenticate_token(hub, token) if token else None
    if token is None or session is None:
        refused = problem(401, "unauthorized", "no browser session: sign in with POST /v1/web/sessions", {"WWW-Authenticate": "Bearer"})
        if token is not None:  # a stale cookie is of no use to anyone: drop it
            refused.headers["Set-Cookie"] = cleared_cookie(request)
        return refused
    response = json_response(_session_json(token, session.user, session.expires_at))
    response.headers["Cache-Control"] = "no-store"
    return response


ROUTES: list[tuple[str, Handler, list[str]]] = [
    ("/v1/web/sessions", web_login, ["POST"]),
    ("/v1/web/session", web_session, ["GET"]),
]
OPENAPI_TYPES: list[type] = [WebSessionOut]

_COOKIE_HEADER = {"Set-Cookie": {"required": True, "schema": {"type": "string", "pattern": "^bankhub_session=[^;]+; HttpOnly; SameSite=Strict; Path=/"}}}


def openapi_paths(op: Callable[..., dict[str, Any]], ref: Callable[[str], dict[str, str]]) -> dict[str, Any]:
    login = op(
        "Browser sign-in: the session as an HttpOnly cookie, a CSRF token in the body",
        201,
        "WebSessionOut",
        body=ref("LoginBody"),
        auth=False,
        extra=(400, 401, 403, 429, 503),
    )
    login["description"] = (
        "Checks the password exactly as POST /v1/sessions (same limits, lockout and refusals). The bearer token is "
        "never in the body: it is set as the cookie bankhub_session (HttpOnly; SameSite=Strict; Path=/; Secure under "
        "TLS). With that cookie every operation of this document may be called without an Authorization header; an "
        "unsafe method (POST, PUT, PATCH, DELETE) then needs the header X-CSRF-Token with csrf_token, else 403 "
        "csrf_failed. DELETE /v1/sessions/current signs out and clears the cookie."
    )
    login["responses"]["201"]["headers"] = _COOKIE_HEADER
    login["responses"]["403"]["description"] = "`csrf_failed`: the Origin or Sec-Fetch-Site header names another site"
    current = op("The browser session of the cookie (after a page reload)", 200, "WebSessionOut")
    current["security"] = [{"cookie": []}]
    current["responses"]["401"]["description"] = "`unauthorized`: no session cookie, or its session has ended (the cookie is cleared)"
    return {"/v1/web/sessions": {"post": login}, "/v1/web/session": {"get": current}}
