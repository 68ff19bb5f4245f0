"""HTTP API handlers: decode, call an action, encode. No SQL and no decisions here."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from ..actions import conversations as conv_actions
from ..actions import sessions as session_actions
from ..actions.errors import ActionError
from ..models import ConversationSummary, User
from .auth import require_session
from .problems import json_response, problem

if TYPE_CHECKING:
    from ..hub import Hub

__all__ = ["ROUTES", "MAX_BODY_BYTES"]

MAX_BODY_BYTES = 64 * 1024


class LoginBody(msgspec.Struct, forbid_unknown_fields=True):
    username: str
    password: str


class DirectBody(msgspec.Struct, tag="direct", tag_field="kind", forbid_unknown_fields=True):
    peer: str


class GroupBody(msgspec.Struct, tag="group", tag_field="kind", forbid_unknown_fields=True):
    title: str
    members: list[str]


def _hub(request: Request) -> Hub:
    hub: Hub = request.app.state.hub
    return hub


async def _body(request: Request, type_: Any) -> Any:
    if not request.headers.get("content-type", "").startswith("application/json"):
        raise ActionError("unsupported_media_type", "send Content-Type: application/json")
    raw = b""
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_BODY_BYTES:
            raise ActionError("too_large", f"request body over {MAX_BODY_BYTES} bytes")
    try:
        return msgspec.json.decode(raw, type=type_)
    except msgspec.ValidationError as exc:
        raise ActionError("invalid_request", str(exc)) from None
    except msgspec.DecodeError:
        raise ActionError("invalid_request", "body is not valid JSON") from None


def _user_json(u: User) -> dict[str, Any]:
    return {
        "id": u.id,
        "username": u.username,
        "display_name": u.display_name,
        "role": u.role.value,
        "org_id": u.org_id,
        "rm_id": u.rm_id,
    }


async def login(request: Request) -> Response:
    body: LoginBody = await _body(request, LoginBody)
    client = request.client.host if request.client else None
    result = await session_actions.login(
        _hub(request), body.username, body.password, user_agent=request.headers.get("user-agent"), ip=client
    )
    return json_response(
        {
            "token": result.token,
            "session_id": result.session_id,
            "expires_at": result.expires_at.isoformat(),
            "user": _user_json(result.user),
        },
        201,
    )


async def logout(request: Request) -> Response:
    hub = _hub(request)
    session = await require_session(hub, request)
    await session_actions.logout(hub, session)
    return Response(status_code=204)


async def ws_ticket(request: Request) -> Response:
    hub = _hub(request)
    session = await require_session(hub, request)
    ticket = await session_actions.issue_ws_ticket(hub, session)
    return json_response({"ticket": ticket, "expires_in": hub.settings.ws_ticket_ttl_seconds}, 201)


async def me(request: Request) -> Response:
    session = await require_session(_hub(request), request)
    return json_response(_user_json(session.user))


async def list_conversations(request: Request) -> Response:
    hub = _hub(request)
    session = await require_session(hub, request)
    return json_response({"conversations": await conv_actions.list_conversations(hub, session.user)})


async def create_conversation(request: Request) -> Response:
    hub = _hub(request)
    session = await require_session(hub, request)
    body: DirectBody | GroupBody = await _body(request, DirectBody | GroupBody)
    created = True
    summary: ConversationSummary
    if isinstance(body, DirectBody):
        summary, created = await conv_actions.open_direct(hub, session.user, body.peer)
    else:
        summary = await conv_actions.create_group(hub, session.user, body.title, body.members)
    return json_response({"conversation": summary}, 201 if created else 200)


def _int_param(request: Request, name: str, default: int | None) -> int | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ActionError("invalid_request", f"{name} must be an integer") from None
    if not 0 <= value <= 2**62:
        raise ActionError("invalid_request", f"{name} is out of range")
    return value


async def conversation_messages(request: Request) -> Response:
    hub = _hub(request)
    session = await require_session(hub, request)
    before = _int_param(request, "before_seq", None)
    limit = _int_param(request, "limit", 50) or 50
    page, has_more = await conv_actions.history(hub, session.user, request.path_params["conversation_id"], before, limit)
    return json_response({"messages": page, "has_more": has_more})


async def healthz(request: Request) -> Response:
    return json_response({"status": "ok"})


async def readyz(request: Request) -> Response:
    hub = _hub(request)
    db_ok = await hub.db.ping()
    broker_ok = await hub.broker.ping()
    ok = db_ok and broker_ok and not hub.draining
    checks = {"postgres": db_ok, "broker": broker_ok, "draining": hub.draining}
    if not ok:
        return problem(503, "not_ready", f"checks: {checks}")
    return json_response({"status": "ready", "checks": checks, "node": hub.settings.node_name})


Handler = Callable[[Request], Awaitable[Response]]
ROUTES: list[tuple[str, Handler, list[str]]] = [
    ("/healthz", healthz, ["GET"]),
    ("/readyz", readyz, ["GET"]),
    ("/v1/sessions", login, ["POST"]),
    ("/v1/sessions/current", logout, ["DELETE"]),
    ("/v1/ws-tickets", ws_ticket, ["POST"]),
    ("/v1/me", me, ["GET"]),
    ("/v1/conversations", list_conversations, ["GET"]),
    ("/v1/conversations", create_conversation, ["POST"]),
    ("/v1/conversations/{conversation_id}/messages", conversation_messages, ["GET"]),
]
