"""HTTP for the embeddable service widget (docs/widget.md): the loader script, the framed
page, the exchange of a visitor token for a session, and partner registration by head office.

* ``GET /widget/loader.js`` — the script a partner page includes (``data-partner``).
* ``GET /widget/frame?partner=<id>`` — the chat page the loader frames. Its
  ``Content-Security-Policy`` says ``frame-ancestors`` with exactly the partner's origins
  this hub honours, so no other site can frame it; an unknown or disabled partner (or a
  malformed id) is a 404 problem with ``frame-ancestors 'none'``. No ``X-Frame-Options``
  (the CSP governs; the legacy header cannot list origins). Script only from the hub
  (``script-src 'self'``: no inline script); the page learns the partner and its origins
  from ``data-`` attributes.
* ``POST /v1/widget/sessions`` — ``{partner_id, token}``: a partner's signed visitor token
  (``bankhub.widget.tokens``) for a bearer token in the JSON body. No cookie is set: the frame
  keeps the token in memory (third-party cookies and storage may be blocked inside a frame).
* ``GET``/``POST /v1/widget/partners`` — head-office administrators list and register
  partners (the secret is in the answer once).
"""

from __future__ import annotations

import html
import re
from typing import TYPE_CHECKING, Annotated, Any, Callable

import msgspec
from msgspec import Meta
from starlette.requests import Request
from starlette.responses import Response

from .. import policy
from ..actions import widget as widget_actions
from ..actions.errors import require
from ..storage.widget import WidgetPartner
from ..web import WEB_ROOT, _file
from .. import text
from .handler import RouteTable, client_ip, read_json, user_agent
from .params import TextParam
from .problems import json_response, problem
from .routes import UserOut, user_json

if TYPE_CHECKING:
    from ..hub import Hub
    from ..models import Session

__all__ = ["ROUTES", "OPENAPI_TYPES", "openapi_paths", "frame_policy", "WidgetSessionBody", "WidgetSessionOut"]

ROUTES = RouteTable()

_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_STATIC = WEB_ROOT / "static" / "widget"
_NONE_POLICY = "default-src 'none'; frame-ancestors 'none'"
PARTNER = TextParam("partner", Annotated[text.Line, Meta(max_length=64)], "query", "the partner id (data-partner)")


class WidgetSessionBody(msgspec.Struct, forbid_unknown_fields=True):
    partner_id: Annotated[str, Meta(pattern=_UUID.pattern)]
    token: Annotated[str, Meta(min_length=1, max_length=2048, pattern=r"^[A-Za-z0-9._-]+$")]


class WidgetSessionOut(msgspec.Struct):
    token: str  # the visitor's bearer token: keep it in memory only
    session_id: str
    expires_at: str
    user: UserOut
    partner: str  # the partner's name


class PartnerBody(msgspec.Struct, forbid_unknown_fields=True):
    name: Annotated[str, Meta(pattern=r"^[a-z0-9][a-z0-9._-]{1,63}$")]
    # checked exactly by bankhub.widget.origins.normalise: https://host[:port], no path
    origins: Annotated[list[Annotated[str, Meta(max_length=255, pattern=r"^[A-Za-z][A-Za-z0-9+.-]*://[^\s/?#@]+/?$")]], Meta(min_length=1, max_length=16)]


class PartnerOut(msgspec.Struct):
    id: str
    name: str
    origins: list[str]
    enabled: bool
    created_at: str


class PartnerCreated(PartnerOut):
    secret: str  # shown once: the partner's backend signs visitor tokens with it


class PartnerList(msgspec.Struct):
    partners: list[PartnerOut]


def _partner_json(p: WidgetPartner) -> dict[str, Any]:
    return {"id": p.id, "name": p.name, "origins": p.origins, "enabled": p.enabled, "created_at": p.created_at.isoformat()}


def frame_policy(origins: tuple[str, ...]) -> str:
    """The frame page's Content-Security-Policy: the hub's own strict policy, framed only by ``origins``."""
    return (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; connect-src 'self'; "
        "font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors " + " ".join(origins)
    )


_FRAME = """<!doctype html>
<html lang="zh-CN">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>在线客服 · Service desk</title>
<link rel="stylesheet" href="/static/widget/widget.css">
<script type="module" src="/static/widget/frame.js"></script>
</head>
<body data-partner="{partner}" data-origins="{origins}">
<main class="widget" aria-labelledby="widget-title">
<header class="widget-head"><h1 id="widget-title">在线客服</h1>
<button type="button" id="widget-close" class="widget-close" aria-label="关闭">×</button></header>
<p id="widget-status" class="widget-status" role="status">正在连接…</p>
<button type="button" id="widget-start" class="widget-start" hidden>开始咨询</button>
<ol id="widget-log" class="widget-log" role="log" aria-live="polite" aria-label="对话"></ol>
<form id="widget-form" class="widget-form" hidden>
<label for="widget-text" id="widget-text-label">输入消息</label>
<textarea id="widget-text" rows="2" maxlength="4000" required></textarea>
<button type="submit" id="widget-send">发送</button>
</form>
</main>
</body>
</html>
"""


def _not_framable(message: str) -> Response:
    return problem(404, "not_found", message, {"Content-Security-Policy": _NONE_POLICY})


@ROUTES.public("GET", "/widget/frame")
async def widget_frame(request: Request, hub: Hub) -> Response:
    partner_id = PARTNER.read(request) or ""
    found = await widget_actions.framing_origins(hub, partner_id) if _UUID.fullmatch(partner_id) else None
    if found is None:
        return _not_framable("no such widget partner")
    partner, origins = found
    page = _FRAME.format(partner=html.escape(partner.id), origins=html.escape(" ".join(origins)))
    return Response(
        page,
        media_type="text/html; charset=utf-8",
        headers={"Content-Security-Policy": frame_policy(origins), "Cache-Control": "no-store"},
    )


@ROUTES.public("GET", "/widget/loader.js")
async def widget_loader(request: Request, hub: Hub) -> Response:
    return _file(_STATIC / "loader.js", request)


@ROUTES.public("POST", "/v1/widget/sessions")
async def widget_session(request: Request, hub: Hub) -> Response:
    body: WidgetSessionBody = await read_json(request, WidgetSessionBody)
    result, partner = await widget_actions.exchange(
        hub, body.partner_id, body.token, user_agent=user_agent(request), ip=client_ip(request)
    )
    out = {
        "token": result.token,
        "session_id": result.session_id,
        "expires_at": result.expires_at.isoformat(),
        "user": user_json(result.user),
        "partner": partner.name,
    }
    answer = json_response(out, 201)
    answer.headers["Cache-Control"] = "no-store"
    return answer


@ROUTES.authenticated("GET", "/v1/widget/partners")
async def list_partners(request: Request, hub: Hub, session: Session) -> Response:
    require(policy.may_manage_widget_partners(session.user))
    partners = await widget_actions.list_partners(hub.db)
    return json_response({"partners": [_partner_json(p) for p in partners]})


@ROUTES.authenticated("POST", "/v1/widget/partners")
async def add_partner(request: Request, hub: Hub, session: Session) -> Response:
    require(policy.may_manage_widget_partners(session.user))
    body: PartnerBody = await read_json(request, PartnerBody)
    partner, secret = await widget_actions.add_partner(hub.db, hub.keyring.provider, body.name, body.origins, actor=session.user)
    answer = json_response({**_partner_json(partner), "secret": secret}, 201)
    answer.headers["Cache-Control"] = "no-store"
    return answer


OPENAPI_TYPES: list[type] = [WidgetSessionBody, WidgetSessionOut, PartnerBody, PartnerOut, PartnerCreated, PartnerList]


def openapi_paths(op: Callable[..., dict[str, Any]], ref: Callable[[str], dict[str, str]]) -> dict[str, Any]:
    """The OpenAPI paths of this module (``op`` and ``ref`` are openapi.py's builders)."""
    partner_param = PARTNER.openapi()
    not_found = {"description": "`not_found`: no such enabled partner (CSP frame-ancestors 'none')", "content": {"application/problem+json": {"schema": ref("Problem")}}}
    frame = {
        "summary": "The widget's chat page, framed only by the partner's registered origins (CSP frame-ancestors)",
        "security": [],
        "parameters": [partner_param],
        "responses": {"200": {"description": "OK", "content": {"text/html": {}}}, "404": not_found},
    }
    loader = {
        "summary": "The loader script a partner page includes with data-partner (docs/widget.md)",
        "security": [],
        "responses": {
            "200": {"description": "OK", "content": {"text/javascript": {}}},
            "304": {"description": "Not modified (If-None-Match)"},
        },
    }
    exchange = op(
        "Exchange a partner's signed visitor token for a visitor session (bearer token in the body; no cookie)",
        201,
        "WidgetSessionOut",
        body=ref("WidgetSessionBody"),
        auth=False,
        extra=(400, 401, 403, 429, 503),
    )
    exchange["description"] = (
        "The token is HMAC-SHA256-signed by the partner's backend (docs/widget.md), lives at most "
        "BANKHUB_WIDGET_TOKEN_MAX_LIFETIME_SECONDS and is exchanged once. The visitor's session lasts "
        "BANKHUB_WIDGET_SESSION_MINUTES and may only use the service desk."
    )
    exchange["responses"]["401"]["description"] = (
        "`invalid_visitor_token` (malformed, bad signature, unknown or other partner), `visitor_token_expired` "
        "(expired, issued in the future, or living too long), `visitor_token_replayed` (exchanged before)"
    )
    exchange["responses"]["403"]["description"] = "`forbidden`: the partner or the visitor is disabled"
    return {
        "/widget/frame": {"get": frame},
        "/widget/loader.js": {"get": loader},
        "/v1/widget/sessions": {"post": exchange},
        "/v1/widget/partners": {
            "get": op("Widget partners (head-office administrators)", 200, "PartnerList", extra=(403,)),
            "post": op(
                "Register a widget partner (head-office administrators); its secret is in this answer only",
                201,
                "PartnerCreated",
                body=ref("PartnerBody"),
                extra=(400, 403, 409),
            ),
        },
    }
