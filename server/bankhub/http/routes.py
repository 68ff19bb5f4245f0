"""HTTP API handlers: decode, call an action, encode. No SQL and no decisions here."""

from __future__ import annotations

import datetime as dt
import uuid
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
from ..text import Line, LoginName, Password, Username
from ..models import ConversationKey
from .auth import cleared_cookie, cookie_token
from .handler import RouteTable, client_ip, read_json, user_agent
from .paging import BEFORE_SEQ, PAGE_LIMIT, Cursor, cursor_page
from .params import CASE_REF, CONVERSATION_ID, KEEP_CURRENT, PRIVILEGED_READ_REASON, SESSION_ID, USERNAME
from .problems import json_response, problem

if TYPE_CHECKING:
    from ..hub import Hub
    from ..models import Session

__all__ = ["ROUTES", "RoleName", "LoginBody", "DirectBody", "GroupBody", "PasswordBody", "RoleBody", "AssignBody", "UserOut", "user_json"]

ROUTES = RouteTable()


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


class UserOut(msgspec.Struct):
    id: str
    username: str
    display_name: str
    role: str
    org_id: str
    rm_id: str | None


def user_json(u: User) -> dict[str, Any]:
    """A user as every answer shows one (:class:`UserOut`)."""
    return {
        "id": u.id,
        "username": u.username,
        "display_name": u.display_name,
        "role": u.role.value,
        "org_id": u.org_id,
        "rm_id": u.rm_id,
    }


@ROUTES.public("POST", "/v1/sessions")
async def login(request: Request, hub: Hub) -> Response:
    body: LoginBody = await read_json(request, LoginBody)
    result = await session_actions.login(
        hub, body.username, body.password, user_agent=user_agent(request), ip=client_ip(request)
    )
    return json_response(_login_json(result), 201)


@ROUTES.authenticated("DELETE", "/v1/sessions/current")
async def logout(request: Request, hub: Hub, session: Session) -> Response:
    await session_actions.logout(hub, session, ip=client_ip(request))
    response = Response(status_code=204)
    if cookie_token(request) is not None:  # a browser signing out: its cookie goes too
        response.headers["Set-Cookie"] = cleared_cookie(request)
    return response


class PasswordBody(msgspec.Struct, forbid_unknown_fields=True):
    current_password: Password
    new_password: Password


class RoleBody(msgspec.Struct, forbid_unknown_fields=True):
    role: RoleName


def _login_json(result: session_actions.LoginResult) -> dict[str, Any]:
    return {
        "token": result.token,
        "session_id": result.session_id,
        "expires_at": result.expires_at.isoformat(),
        "user": user_json(result.user),
    }


@ROUTES.authenticated("POST", "/v1/sessions/refresh")
async def refresh_session(request: Request, hub: Hub, session: Session) -> Response:
    result = await session_actions.refresh(hub, session, user_agent=user_agent(request), ip=client_ip(request))
    return json_response(_login_json(result), 201)


SessionKey = tuple[dt.datetime, uuid.UUID]
SESSION_CURSOR = Cursor[SessionKey](SessionKey)
CONVERSATION_CURSOR = Cursor[ConversationKey](ConversationKey)


@ROUTES.authenticated("GET", "/v1/sessions")
async def list_sessions(request: Request, hub: Hub, session: Session) -> Response:
    sessions, next_cursor = await cursor_page(
        request,
        SESSION_CURSOR,
        lambda after, limit: session_actions.list_sessions(hub, session, after=after, limit=limit),
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


@ROUTES.authenticated("DELETE", "/v1/sessions/{session_id}")
async def revoke_session(request: Request, hub: Hub, session: Session) -> Response:
    await session_actions.revoke_session(hub, session, SESSION_ID.value(request))
    return Response(status_code=204)


@ROUTES.authenticated("DELETE", "/v1/sessions")
async def revoke_all_sessions(request: Request, hub: Hub, session: Session) -> Response:
    raw_keep = KEEP_CURRENT.read(request) or "false"
    if raw_keep not in ("true", "false"):
        raise ActionError("invalid_request", "keep_current must be true or false")
    keep = raw_keep == "true"
    count = await session_actions.revoke_all_sessions(hub, session, keep_current=keep)
    return json_response({"revoked": count})


@ROUTES.authenticated("POST", "/v1/me/password")
async def change_password(request: Request, hub: Hub, session: Session) -> Response:
    body: PasswordBody = await read_json(request, PasswordBody)
    count = await session_actions.change_password(hub, session, body.current_password, body.new_password, ip=client_ip(request))
    return json_response({"revoked_sessions": count})


@ROUTES.authenticated("PUT", "/v1/users/{username}/role")
async def change_role(request: Request, hub: Hub, session: Session) -> Response:
    body: RoleBody = await read_json(request, RoleBody)
    changed = await user_actions.change_role(hub, session.user, USERNAME.value(request), body.role, ip=client_ip(request))
    if isinstance(changed, user_actions.AdminRequestView):  # an administrative role: a second administrator decides
        return json_response(changed, 202)
    return json_response(user_json(changed))


class AssignBody(msgspec.Struct, forbid_unknown_fields=True):
    rm: Username


@ROUTES.authenticated("PUT", "/v1/customers/{username}/rm")
async def reassign_customer(request: Request, hub: Hub, session: Session) -> Response:
    body: AssignBody = await read_json(request, AssignBody)
    user = await customer_actions.reassign_customer(
        hub, session.user, USERNAME.value(request), body.rm, ip=client_ip(request)
    )
    return json_response(user_json(user))


@ROUTES.authenticated("POST", "/v1/ws-tickets")
async def ws_ticket(request: Request, hub: Hub, session: Session) -> Response:
    ticket = await session_actions.issue_ws_ticket(hub, session)
    return json_response({"ticket": ticket, "expires_in": hub.settings.ws_ticket_ttl_seconds}, 201)


@ROUTES.authenticated("GET", "/v1/me")
async def me(request: Request, hub: Hub, session: Session) -> Response:
    return json_response(user_json(session.user))


@ROUTES.authenticated("GET", "/v1/conversations")
async def list_conversations(request: Request, hub: Hub, session: Session) -> Response:
    page, next_cursor = await cursor_page(
        request,
        CONVERSATION_CURSOR,
        lambda after, limit: conv_actions.list_conversations(hub, session.user, after=after, limit=limit),
        lambda entry: entry[1],
    )
    return json_response({"conversations": [c for c, _ in page], "next_cursor": next_cursor})


@ROUTES.authenticated("POST", "/v1/conversations")
async def create_conversation(request: Request, hub: Hub, session: Session) -> Response:
    body: DirectBody | GroupBody = await read_json(request, DirectBody | GroupBody)
    created = True
    summary: ConversationSummary
    if isinstance(body, DirectBody):
        summary, created = await conv_actions.open_direct(hub, session.user, body.peer)
    else:
        summary = await conv_actions.create_group(hub, session.user, body.title, body.members)
    return json_response({"conversation": summary}, 201 if created else 200)


@ROUTES.authenticated("GET", "/v1/conversations/{conversation_id}/messages")
async def conversation_messages(request: Request, hub: Hub, session: Session) -> Response:
    before = BEFORE_SEQ.read(request)
    limit = PAGE_LIMIT.read_default(request)
    page, has_more = await conv_actions.history(hub, session.user, CONVERSATION_ID.value(request), before, limit)
    return json_response({"messages": page, "has_more": has_more})


@ROUTES.authenticated("GET", "/v1/compliance/conversations/{conversation_id}/messages", audited_read=True)
async def compliance_messages(request: Request, hub: Hub, session: Session) -> Response:
    page, has_more, revisions = await compliance_actions.read_conversation(
        hub,
        session.user,
        CONVERSATION_ID.value(request),
        reason=PRIVILEGED_READ_REASON.read(request) or "",
        case_ref=CASE_REF.read(request),
        before_seq=BEFORE_SEQ.read(request),
        limit=PAGE_LIMIT.read_default(request),
        ip=client_ip(request),
    )
    return json_response({"messages": page, "has_more": has_more, "revisions": revisions})


@ROUTES.public("GET", "/healthz")
async def healthz(request: Request, hub: Hub) -> Response:
    return json_response({"status": "ok"})


@ROUTES.public("GET", "/readyz")
async def readyz(request: Request, hub: Hub) -> Response:
    db_ok = await hub.db.ping()
    broker_ok = await hub.broker.ping()
    ok = db_ok and broker_ok and not hub.draining
    checks = {"postgres": db_ok, "broker": broker_ok, "draining": hub.draining}
    if not ok:
        return problem(503, "not_ready", f"checks: {checks}")
    return json_response({"status": "ready", "checks": checks, "node": hub.settings.node_name})

