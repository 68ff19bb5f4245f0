"""The OpenAPI 3.1 document served at ``/openapi.json``.

Request and response schemas are generated from the same msgspec types the handlers
decode and encode, so the document cannot drift from the code's shapes.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import msgspec

from ..models import ConversationSummary
from ..policy import PRIVILEGED_READ_REASONS
from ..protocol.frames import Message
from . import accounts as account_routes
from . import alerts as alert_routes
from . import service as service_routes
from .routes import AssignBody, DirectBody, GroupBody, LoginBody, PasswordBody, RoleBody

__all__ = ["openapi_document"]


class UserOut(msgspec.Struct):
    id: str
    username: str
    display_name: str
    role: str
    org_id: str
    rm_id: str | None


class LoginOut(msgspec.Struct):
    token: str
    session_id: str
    expires_at: str
    user: UserOut


class TicketOut(msgspec.Struct):
    ticket: str
    expires_in: int


class ConversationList(msgspec.Struct):
    conversations: list[ConversationSummary]


class ConversationOut(msgspec.Struct):
    conversation: ConversationSummary


class MessagePage(msgspec.Struct):
    messages: list[Message]
    has_more: bool


class SessionOut(msgspec.Struct):
    id: str
    created_at: str
    expires_at: str
    user_agent: str | None
    ip: str | None
    current: bool


class SessionList(msgspec.Struct):
    sessions: list[SessionOut]


class Problem(msgspec.Struct):
    type: str
    title: str
    status: int
    code: str
    detail: str


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(name: str) -> dict[str, Any]:
    return {"content": {"application/json": {"schema": _ref(name)}}}


def _op(summary: str, ok: int, out: str | None, *, body: dict[str, Any] | None = None, auth: bool = True, extra: tuple[int, ...] = ()) -> dict[str, Any]:
    responses: dict[str, Any] = {str(ok): {"description": "OK", **(_json(out) if out else {})}}
    for status in ((401,) if auth else ()) + extra:
        responses[str(status)] = {
            "description": "Problem",
            "content": {"application/problem+json": {"schema": _ref("Problem")}},
        }
    op: dict[str, Any] = {"summary": summary, "responses": responses}
    if body is not None:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
    if not auth:
        op["security"] = []
    return op


@cache
def openapi_document() -> dict[str, Any]:
    types = [
        LoginBody,
        DirectBody,
        GroupBody,
        PasswordBody,
        RoleBody,
        AssignBody,
        LoginOut,
        TicketOut,
        UserOut,
        SessionList,
        ConversationList,
        ConversationOut,
        MessagePage,
        Problem,
        *account_routes.OPENAPI_TYPES,
        *alert_routes.OPENAPI_TYPES,
        *service_routes.OPENAPI_TYPES,
    ]
    _, components = msgspec.json.schema_components(types, ref_template="#/components/schemas/{name}")
    conv_id = {"name": "conversation_id", "in": "path", "required": True, "schema": {"type": "string", "format": "uuid"}}
    history = _op("A page of history, newest first", 200, "MessagePage", extra=(400, 404))
    history["parameters"] = [
        conv_id,
        {"name": "before_seq", "in": "query", "schema": {"type": "integer", "minimum": 0}},
        {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 200, "default": 50}},
    ]
    privileged = _op("Compliance: read any conversation, audited, with a reason code", 200, "MessagePage", extra=(400, 403, 404))
    privileged["parameters"] = history["parameters"] + [
        {
            "name": "reason",
            "in": "query",
            "required": True,
            "schema": {"type": "string", "enum": sorted(PRIVILEGED_READ_REASONS)},
        },
        {"name": "case_ref", "in": "query", "schema": {"type": "string", "maxLength": 128}},
    ]
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "bankhub HTTP API",
            "version": "1",
            "description": "Sessions, conversations and history. Real-time messaging is the WebSocket "
            "protocol v1 at /v1/ws (subprotocol bankhub.v1), specified in docs/protocol.md.",
        },
        "components": {
            "schemas": components,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
        "paths": {
            "/healthz": {"get": _op("Liveness", 200, None, auth=False)},
            "/readyz": {"get": _op("Readiness: Postgres and broker reachable", 200, None, auth=False, extra=(503,))},
            "/v1/sessions": {
                "post": _op(
                    "Sign in; returns a bearer token", 201, "LoginOut", body=_ref("LoginBody"), auth=False, extra=(400, 401, 423, 429, 503)
                ),
                "get": _op("My active sessions", 200, "SessionList"),
                "delete": _op("Revoke all my sessions (?keep_current=true keeps this one)", 200, None),
            },
            "/v1/sessions/current": {"delete": _op("Sign out (revoke this session)", 204, None)},
            "/v1/sessions/refresh": {"post": _op("Trade this token for a fresh one; the old one stops working", 201, "LoginOut")},
            "/v1/sessions/{session_id}": {"delete": _op("Revoke one of my sessions", 204, None, extra=(404,))},
            "/v1/me/password": {
                "post": _op("Change my password; my other sessions end", 200, None, body=_ref("PasswordBody"), extra=(400, 403, 429))
            },
            "/v1/customers/{username}/rm": {
                "put": _op(
                    "Reassign a customer to another RM (administrators); the old RM loses access at once",
                    200,
                    "UserOut",
                    body=_ref("AssignBody"),
                    extra=(400, 403, 404),
                )
            },
            "/v1/users/{username}/role": {
                "put": _op("Change a user's role (administrators); their sessions end", 200, "UserOut", body=_ref("RoleBody"), extra=(403, 404))
            },
            "/v1/ws-tickets": {"post": _op("A single-use 30-second ticket for a browser WebSocket", 201, "TicketOut")},
            "/v1/me": {"get": _op("The signed-in user", 200, "UserOut")},
            "/v1/conversations": {
                "get": _op("My conversations with unread counts", 200, "ConversationList"),
                "post": _op(
                    "Open a direct conversation (200 if it existed) or create a group",
                    201,
                    "ConversationOut",
                    body={"oneOf": [_ref("DirectBody"), _ref("GroupBody")]},
                    extra=(400, 403, 404),
                ),
            },
            "/v1/conversations/{conversation_id}/messages": {"get": history},
            "/v1/compliance/conversations/{conversation_id}/messages": {"get": privileged},
            **account_routes.openapi_paths(_op, _ref),
            **alert_routes.openapi_paths(_op, _ref),
            **service_routes.openapi_paths(_op, _ref),
        },
    }
