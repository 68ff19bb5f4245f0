"""HTTP API handlers: decode, call an action, encode. No SQL and no decisions here."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, Any, Literal

import msgspec
from msgspec import Meta
from starlette.requests import Request
from starlette.responses import Response

from ..actions import compliance as compliance_actions
from ..actions import conversations as conv_actions
from ..actions import customers as customer_actions
from ..actions import sessions as session_actions
from ..actions import users as user_actions
from ..actions.conversations import MAX_GROUP_MEMBERS
from ..actions.errors import ActionError
from ..models import ConversationSummary, User
from ..text import Line, LoginName, Password, Username, explain, header_line
from ..storage.conversations import ConversationKey
from .auth import cleared_cookie, cookie_token, require_session
from .paging import BEFORE_SEQ, PAGE_LIMIT, Cursor, next_page
from .params import CASE_REF, CONVERSATION_ID, KEEP_CURRENT, PRIVILEGED_READ_REASON, SESSION_ID, USERNAME
from .problems import json_response, problem

if TYPE_CHECKING:
    from ..hub import Hub

__all__ = ["ROUTES", "MAX_BODY_BYTES"]

MAX_BODY_BYTES = 64 * 1024


# the roles of bankhub.models.Role, as the document's enum
RoleName = Literal["customer", "rm", "agent", "staff", "branch_admin", "head_office_admin", "compliance"]

class LoginBody(msgspec.Struct, forbid_unknown_fields=True):
    username: LoginName
    password: Password


class DirectBody(msgspec.Struct, tag="direct", tag_field="kind", forbid_unknown_fields=True):
    peer: Username


class GroupBody(msgspec.Struct, tag="group", tag_field="kind", forbid_unknown_fields=True):
    title: Annotated[Line, Meta(min_length=1, max_length=100)]
    members: Annotated[list[Username], Meta(max_length=MAX_GROUP_MEMBERS)]


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
        raise ActionError("invalid_request", explain(str(exc))) from None
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
    result = await session_actions.login(
        _hub(request), body.username, body.password, user_agent=header_line(request.headers.get("user-agent")), ip=_client_ip(request)
    )
    return json_response(_login_json(result), 201)


async def logout(request: Request) -> Response:
    hub = _hub(request)
    session = await require_session(hub, request)
    await session_actions.logout(hub, session, ip=_client_ip(request))
    response = Response(status_code=204)
    if cookie_token(request) is not None:  # a browser signing out: its cookie goes too
        response.headers["Set-Cookie"] = cleared_cookie(request)
    return response


class PasswordBody(msgspec.Struct, forbid_unknown_fields=True):
    current_password: Password
    new_password: Password


class RoleBody(msgspec.Struct, forbid_unknown_fields=True):
    role: RoleName


def _client_ip(request: Request) -> str | None:
    return request.client.host if request.client else None


def _login_json(result: session_actions.LoginResult) -> dict[str, Any]:
    return {
        "token": result.token,
        "session_id": result.session_id,
        "expires_at": result.expires_at.isoformat(),
        "user": _user_json(result.user),
    }


async def refresh_session(request: Request) -> Response:
    hub = _hub(request)
    session = await require_session(hub, request)
    result = await session_actions.refresh(hub, session, user_agent=header_line(request.headers.get("user-agent")), ip=_client_ip(request))
    return json_response(_login_json(result), 201)


SessionKey = tuple[dt.datetime, uuid.UUID]
SESSION_CURSOR = Cursor[SessionKey](SessionKey)
CONVERSATION_CURSOR = Cursor[ConversationKey](ConversationKey)


async def list_sessions(request: Request) -> Response:
    hub = _hub(request)
    session = await require_session(hub, request)
    limit = PAGE_LIMIT.read_default(request)
    sessions, next_cursor = next_page(
        await session_actions.list_sessions(hub, session, after=SESSION_CURSOR.read(request), limit=limit + 1),
        limit,
        lambda s: (s.created_at, uuid.UUID(s.id)),
    )
    return json_response(
        {
            "next_cursor": next_cursor,
            "sessions": [
                {
                    "id": s.id,
                    "created_at": s.created_at.isoformat(),
                    "expires_at": s.expires_at.isoformat(),
                    "user_agent": s.user_agent,
                    "ip": s.ip,
                    "current": s.id == session.id,
                }
                for s in sessions
            ]
        }
    )


async def revoke_session(request: Request) -> Response:
    hub = _hub(request)
    session = await require_session(hub, request)
    await session_actions.revoke_session(hub, session, SESSION_ID.value(request))
    return Response(status_code=204)


async def revoke_all_sessions(request: Request) -> Response:
    hub = _hub(request)
    session = await require_session(hub, request)
    raw_keep = KEEP_CURRENT.read(request) or "false"
    if raw_keep not in ("true", "false"):
        raise ActionError("invalid_request", "keep_current must be true or false")
    keep = raw_keep == "true"
    count = await session_actions.revoke_all_sessions(hub, session, keep_current=keep)
    return json_response({"revoked": count})


async def change_password(request: Request) -> Response:
    hub = _hub(request)
    session = await require_session(hub, request)
    body: PasswordBody = await _body(request, PasswordBody)
    count = await session_actions.change_password(hub, session, body.current_password, body.new_password, ip=_client_ip(request))
    return json_response({"revoked_sessions": count})


async def change_role(request: Request) -> Response:
    hub = _hub(request)
    session = await require_session(hub, request)
    body: RoleBody = await _body(request, RoleBody)
    changed = await user_actions.change_role(hub, session.user, USERNAME.value(request), body.role, ip=_client_ip(request))
    if isinstance(changed, user_actions.AdminRequestView):  # an administrative role: a second administrator decides
        return json_response(changed, 202)
    return json_response(_user_json(changed))


class AssignBody(msgspec.Struct, forbid_unknown_fields=True):
    rm: Username


async def reassign_customer(request: Request) -> Response:
    hub = _hub(request)
    session = await require_session(hub, request)
    body: AssignBody = await _body(request, AssignBody)
    user = await customer_actions.reassign_customer(
        hub, session.user, USERNAME.value(request), body.rm, ip=_client_ip(request)
    )
    return json_response(_user_json(user))


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
    limit = PAGE_LIMIT.read_default(request)
    page, next_cursor = next_page(
        await conv_actions.list_conversations(hub, session.user, after=CONVERSATION_CURSOR.read(request), limit=limit + 1),
        limit,
        lambda entry: entry[1],
    )
    return json_response({"conversations": [c for c, _ in page], "next_cursor": next_cursor})


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


async def conversation_messages(request: Request) -> Response:
    hub = _hub(request)
    session = await require_session(hub, request)
    before = BEFORE_SEQ.read(request)
    limit = PAGE_LIMIT.read_default(request)
    page, has_more = await conv_actions.history(hub, session.user, CONVERSATION_ID.value(request), before, limit)
    return json_response({"messages": page, "has_more": has_more})


async def compliance_messages(request: Request) -> Response:
    hub = _hub(request)
    session = await require_session(hub, request)
    page, has_more = await compliance_actions.read_conversation(
        hub,
        session.user,
        CONVERSATION_ID.value(request),
        reason=PRIVILEGED_READ_REASON.read(request) or "",
        case_ref=CASE_REF.read(request),
        before_seq=BEFORE_SEQ.read(request),
        limit=PAGE_LIMIT.read_default(request),
        ip=_client_ip(request),
    )
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
    ("/v1/sessions", list_sessions, ["GET"]),
    ("/v1/sessions", revoke_all_sessions, ["DELETE"]),
    ("/v1/sessions/current", logout, ["DELETE"]),
    ("/v1/sessions/refresh", refresh_session, ["POST"]),
    ("/v1/sessions/{session_id}", revoke_session, ["DELETE"]),
    ("/v1/me/password", change_password, ["POST"]),
    ("/v1/users/{username}/role", change_role, ["PUT"]),
    ("/v1/customers/{username}/rm", reassign_customer, ["PUT"]),
    ("/v1/ws-tickets", ws_ticket, ["POST"]),
    ("/v1/me", me, ["GET"]),
    ("/v1/conversations", list_conversations, ["GET"]),
    ("/v1/conversations", create_conversation, ["POST"]),
    ("/v1/conversations/{conversation_id}/messages", conversation_messages, ["GET"]),
    ("/v1/compliance/conversations/{conversation_id}/messages", compliance_messages, ["GET"]),
]
