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
from typing import TYPE_CHECKING, Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from ..actions import sessions as session_actions
from .auth import check_browser_origin, csrf_token, session_cookie
from .handler import RouteTable, client_ip, read_json, user_agent
from .problems import json_response
from .routes import LoginBody, UserOut, user_json

if TYPE_CHECKING:
    from ..hub import Hub
    from ..models import Session

__all__ = ["ROUTES", "OPENAPI_TYPES", "WebSessionOut", "openapi_paths"]

ROUTES = RouteTable()


class WebUserOut(UserOut):
    pass  # UserOut under the name the document has always given the browser session's user


class WebSessionOut(msgspec.Struct):
    """A browser session: who is signed in, the CSRF token for unsafe requests, when it ends."""

    user: WebUserOut
    csrf_token: str
    expires_at: str


def _session_json(token: str, user: Any, expires_at: Any) -> dict[str, Any]:
    return {"user": user_json(user), "csrf_token": csrf_token(token), "expires_at": expires_at.isoformat()}


@ROUTES.public("POST", "/v1/web/sessions")
async def web_login(request: Request, hub: Hub) -> Response:
    # login CSRF: another site's page must not sign this browser in to an account of its choosing
    check_browser_origin(hub, request)
    body: LoginBody = await read_json(request, LoginBody)
    result = await session_actions.login(hub, body.username, body.password, user_agent=user_agent(request), ip=client_ip(request))
    response = json_response(_session_json(result.token, result.user, result.expires_at), 201)
    response.headers["Set-Cookie"] = session_cookie(request, result.token)
    response.headers["Cache-Control"] = "no-store"
    return response


@ROUTES.browser_session("GET", "/v1/web/session")
async def web_session(request: Request, hub: Hub, session: Session, token: str) -> Response:
    response = json_response(_session_json(token, session.user, session.expires_at))
    response.headers["Cache-Control"] = "no-store"
    return response


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
