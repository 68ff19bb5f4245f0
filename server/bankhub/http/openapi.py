"""The OpenAPI 3.1 document served at ``/openapi.json``.

Request and response schemas are generated from the same msgspec types the handlers
decode and encode, so the document cannot drift from the code's shapes.
"""

from __future__ import annotations

import re
from functools import cache
from typing import Annotated, Any, Literal

import msgspec

from ..compliance.barriers import SEGMENT_NAME
from ..models import ConversationSummary, MessageRevision
from ..policy import PRIVILEGED_READ_REASONS, WIDGET_VISITOR_ROUTES
from ..protocol.frames import Message
from . import accounts as account_routes
from . import contacts as contact_routes
from . import admin as admin_routes
from . import alerts as alert_routes
from . import media as media_routes
from . import cards as card_routes
from . import presence as presence_routes
from . import service as service_routes
from . import groups as group_routes
from . import web_sessions as web_routes
from . import widget as widget_routes
from . import barriers as barriers_routes
from . import compliance_console as compliance_console_routes
from . import holds as holds_routes
from . import retention as retention_routes
from . import exports as exports_routes
from . import dlp as dlp_routes
from . import supervision as supervision_routes
from . import metrics as metrics_routes
from . import params
from .handler import AUDITED_READS
from .paging import BEFORE_SEQ, CURSOR_PARAM, PAGE_LIMIT
from .routes import AssignBody, DirectBody, GroupBody, LoginBody, PasswordBody, RoleBody, UserOut

__all__ = ["openapi_document", "operation_id", "PATH_PARAMETERS"]


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
    next_cursor: str | None  # more follow: pass it as ?cursor=


class ConversationOut(msgspec.Struct):
    conversation: ConversationSummary


class MessagePage(msgspec.Struct):
    messages: list[Message]
    has_more: bool


class CompliancePage(msgspec.Struct):
    messages: list[Message]
    has_more: bool
    # what recalls and edits replaced in the page's messages (the compliance path only)
    revisions: list[MessageRevision]


class SessionOut(msgspec.Struct):
    id: str
    created_at: str
    expires_at: str
    user_agent: str | None
    ip: str | None
    current: bool


class SessionList(msgspec.Struct):
    sessions: list[SessionOut]
    next_cursor: str | None  # more follow: pass it as ?cursor=


class HealthOut(msgspec.Struct):
    status: Literal["ok"]


class ReadyOut(msgspec.Struct):
    status: Literal["ready"]
    checks: dict[str, bool]
    node: str


class RevokedOut(msgspec.Struct):
    revoked: Annotated[int, msgspec.Meta(ge=0)]


class PasswordChangedOut(msgspec.Struct):
    revoked_sessions: Annotated[int, msgspec.Meta(ge=0)]


class Problem(msgspec.Struct):
    """An RFC 9457 problem; ``code`` is stable and says what went wrong."""

    type: str
    title: str
    status: Annotated[int, msgspec.Meta(ge=400, le=599)]
    code: Annotated[str, msgspec.Meta(min_length=1)]
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


def _described(op: dict[str, Any], description: str, statuses: dict[int, str]) -> dict[str, Any]:
    """``op`` with a description and what its problem statuses mean."""
    op["description"] = description
    for status, text in statuses.items():
        op["responses"][str(status)]["description"] = text
    return op


def _group_full(op: dict[str, Any]) -> dict[str, Any]:
    """``POST /v1/conversations``: a group (kind ``group``) is created as by ``POST /v1/groups``."""
    op["responses"]["409"]["description"] = (
        "`group_full`: a group (kind group) of more members than BANKHUB_GROUP_MAX_MEMBERS, the creator counted"
    )
    return op


def _with_params(op: dict[str, Any], *params: dict[str, Any]) -> dict[str, Any]:
    op["parameters"] = [*op.get("parameters", []), *params]
    return op


def _paged(op: dict[str, Any]) -> dict[str, Any]:
    """A list endpoint: ``?cursor=&limit=``, ``next_cursor`` in the answer."""
    op["description"] = (
        "Paged with a cursor: the answer's next_cursor (null on the last page) is passed back unchanged as "
        "?cursor= for the next page; limit is the page size."
    )
    return _with_params(op, CURSOR_PARAM, PAGE_LIMIT.openapi())


def _also(op: dict[str, Any], status: int, out: str | None, description: str) -> dict[str, Any]:
    """``op`` with a second success status."""
    op["responses"][str(status)] = {"description": description, **(_json(out) if out else {})}
    return op


# The schema of every path parameter, by name; _complete declares them on every operation
# whose path has them, so none can be left out.
_UUID: dict[str, Any] = {"type": "string", "format": "uuid"}
PATH_PARAMETERS: dict[str, dict[str, Any]] = {
    "conversation_id": _UUID,
    "session_id": _UUID,
    "account_id": _UUID,
    "notice_id": _UUID,
    "alert_id": _UUID,
    "request_id": _UUID,
    "media_id": _UUID,
    "variant": {"type": "string", "enum": ["full", "preview", "thumb"]},
    "user_id": _UUID,
    "rule_id": _UUID,  # supervision (http/supervision.py)
    "flag_id": _UUID,
    "policy_id": _UUID,  # retention (http/retention.py)
    "run_id": _UUID,
    "hold_id": _UUID,  # legal holds (http/holds.py)
    "export_id": _UUID,  # eDiscovery exports (http/exports.py)
    # an information-barrier segment (http/barriers.py): a name out of this shape is answered 404
    "name": {"type": "string", "pattern": SEGMENT_NAME.pattern, "minLength": 2, "maxLength": 32},
    # the text types the handlers check these segments with (http/params.py)
    "username": params.USERNAME.openapi()["schema"],
    "code": params.QUEUE_CODE.openapi()["schema"],
}

_CSRF_TEXT = (
    "`csrf_failed`: called with the browser session cookie (no Authorization header) without the session's "
    "X-CSRF-Token, or from another site's page (Origin, Sec-Fetch-Site)"
)
_UNSAFE = frozenset({"post", "put", "patch", "delete"})
_VISITOR_TEXT = "`forbidden`: a service-widget visitor's session may only use the service desk (docs/widget.md)"
_PROBLEM_TEXT = {
    400: "`invalid_request`: a parameter or the body is malformed or out of range",
    401: "`unauthorized`: no, an invalid, expired or revoked bearer token",
    403: _CSRF_TEXT,
    413: "`too_large`: the body is over the size limit",
    415: "`unsupported_media_type`: send Content-Type: application/json",
    429: "`rate_limited`: too many requests; retry after Retry-After seconds",
    503: "`unavailable`: storage or a dependency is unreachable, or the node is draining; nothing was changed, retry",
}
# The operations whose free text is kept in the audit log, and which fields: a value the DLP
# detector finds there is refused (actions/sensitive.py), 422 `sensitive_data`
FREE_TEXT_FIELDS: dict[tuple[str, str], str] = {
    ("post", "/v1/compliance/holds"): "name, case_ref",
    ("post", "/v1/compliance/holds/{hold_id}/release"): "reason",
    ("post", "/v1/compliance/exports"): "case_ref",
    ("get", "/v1/compliance/conversations/{conversation_id}/messages"): "case_ref",
    ("get", "/v1/compliance/supervision/flags/{flag_id}"): "case_ref",
    ("post", "/v1/compliance/supervision/flags/{flag_id}/decision"): "note",
    ("post", "/v1/compliance/erasures"): "reason",
}


def _sensitive_text(fields: str) -> str:
    return (
        f"`sensitive_data`: {fields} (kept in the audit log) carries a card, resident ID or account number, a CVV or a "
        "code; the value is never echoed — find where one appeared with POST /v1/compliance/dlp/search"
    )


_HEADERS = {
    401: {"WWW-Authenticate": {"required": True, "schema": {"type": "string", "minLength": 1}}},
    429: {"Retry-After": {"required": True, "schema": {"type": "string", "pattern": "^[0-9]+$"}}},
}


# every answer carries it (bankhub.logs.RequestIds): a request's own valid X-Request-Id, else a new one
_REQUEST_ID_HEADER = {
    "description": "the request's id, also in its log lines (`request_id`): the request's own `X-Request-Id` when that is "
    "1 to 64 of `A-Za-z0-9._-`, else a new one (docs/operations.md)",
    "required": True,
    "schema": {"type": "string", "pattern": "^[A-Za-z0-9._-]{1,64}$"},
}


def operation_id(method: str, path: str) -> str:
    """The ``operationId`` of an operation: its method and path, e.g. ``get_v1_accounts_account_id``."""
    return method + "_" + re.sub(r"[^A-Za-z0-9]+", "_", path).strip("_")


def _complete(doc: dict[str, Any]) -> dict[str, Any]:
    """Add to every operation what holds for all of them, so no operation can forget it:
    its path parameters (from :data:`PATH_PARAMETERS`), an ``operationId``, and the problem
    statuses every handler can answer — 401 and 429 with a bearer token (and 403 ``csrf_failed``
    on an unsafe method, which a browser may call with the session cookie), 400 with any
    parameter or body, 413 and 415 with a body, 503 wherever storage is touched."""
    for path, item in doc["paths"].items():
        names = re.findall(r"{(\w+)}", path)
        for method, op in item.items():
            params: list[dict[str, Any]] = list(op.get("parameters", []))
            declared = {(p["in"], p["name"]) for p in params}
            params[:0] = [
                {"name": n, "in": "path", "required": True, "schema": PATH_PARAMETERS[n]} for n in names if ("path", n) not in declared
            ]
            if params:
                op["parameters"] = params
            op["operationId"] = operation_id(method, path)
            bearer = op.get("security") != []
            statuses: list[int] = []
            if bearer:
                statuses += [401, 429]
                # an audited read refuses a cookie request from anywhere but the hub's page, GET too
                if method in _UNSAFE or (method.upper(), path) in AUDITED_READS:
                    statuses.append(403)
                    if "403" in op["responses"] and "csrf_failed" not in op["responses"]["403"]["description"]:
                        op["responses"]["403"]["description"] += "; " + _CSRF_TEXT
                # a service-widget visitor's session is refused every operation but the service desk's
                if (method.upper(), path) not in WIDGET_VISITOR_ROUTES:
                    forbidden = op["responses"].setdefault(
                        "403", {"description": _VISITOR_TEXT, "content": {"application/problem+json": {"schema": _ref("Problem")}}}
                    )
                    if _VISITOR_TEXT not in forbidden["description"]:
                        forbidden["description"] += "; " + _VISITOR_TEXT
            if params or "requestBody" in op:
                statuses.append(400)
            if "requestBody" in op:
                statuses += [413, 415]
            if path != "/healthz":
                statuses.append(503)
            responses = op["responses"]
            if (fields := FREE_TEXT_FIELDS.get((method, path))) is not None:
                if "422" in responses:
                    responses["422"]["description"] += "; " + _sensitive_text(fields)
                else:
                    responses["422"] = {
                        "description": _sensitive_text(fields),
                        "content": {"application/problem+json": {"schema": _ref("Problem")}},
                    }
            for status in statuses:
                responses.setdefault(
                    str(status),
                    {"description": _PROBLEM_TEXT[status], "content": {"application/problem+json": {"schema": _ref("Problem")}}},
                )
            for status, headers in _HEADERS.items():
                if str(status) in responses:
                    responses[str(status)].setdefault("headers", headers)
            for response in responses.values():  # every answer, whatever its status
                response["headers"] = {**response.get("headers", {}), "X-Request-Id": _REQUEST_ID_HEADER}
    return doc


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
        CompliancePage,
        Problem,
        HealthOut,
        ReadyOut,
        RevokedOut,
        PasswordChangedOut,
        *account_routes.OPENAPI_TYPES,
        *contact_routes.OPENAPI_TYPES,
        *admin_routes.OPENAPI_TYPES,
        *alert_routes.OPENAPI_TYPES,
        *media_routes.OPENAPI_TYPES,
        *service_routes.OPENAPI_TYPES,
        *presence_routes.OPENAPI_TYPES,
        *group_routes.OPENAPI_TYPES,
        *card_routes.OPENAPI_TYPES,
        *web_routes.OPENAPI_TYPES,
        *widget_routes.OPENAPI_TYPES,
        *barriers_routes.OPENAPI_TYPES,
        *compliance_console_routes.OPENAPI_TYPES,
        *holds_routes.OPENAPI_TYPES,
        *retention_routes.OPENAPI_TYPES,
        *exports_routes.OPENAPI_TYPES,
        *dlp_routes.OPENAPI_TYPES,
        *supervision_routes.OPENAPI_TYPES,
    ]
    _, components = msgspec.json.schema_components(types, ref_template="#/components/schemas/{name}")
    conv_id = {"name": "conversation_id", "in": "path", "required": True, "schema": {"type": "string", "format": "uuid"}}
    history = _op("A page of history, newest first", 200, "MessagePage", extra=(400, 404))
    history["parameters"] = [conv_id, BEFORE_SEQ.openapi(), PAGE_LIMIT.openapi()]
    privileged = _op(
        "Compliance: read any conversation, audited, with a reason code; with the bodies recalls and edits replaced",
        200,
        "CompliancePage",
        extra=(400, 403, 404),
    )
    privileged["parameters"] = history["parameters"] + [
        {
            "name": "reason",
            "in": "query",
            "required": True,
            "schema": {"type": "string", "enum": sorted(PRIVILEGED_READ_REASONS)},
        },
        params.CASE_REF.openapi(),
    ]
    return _complete({
        "openapi": "3.1.0",
        "info": {
            "title": "bankhub HTTP API",
            "version": "1",
            "description": "Sessions, conversations and history. Real-time messaging is the WebSocket "
            "protocol v1 at /v1/ws (subprotocol bankhub.v1), specified in docs/protocol.md.",
        },
        "components": {
            "schemas": components,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                # browsers: POST /v1/web/sessions sets it; every bearer operation also takes it, unsafe
                # methods with the X-CSRF-Token header (see that operation's description)
                "cookie": {"type": "apiKey", "in": "cookie", "name": "bankhub_session"},
            },
        },
        "security": [{"bearer": []}],
        "paths": {
            "/healthz": {"get": _op("Liveness", 200, "HealthOut", auth=False)},
            "/readyz": {"get": _op("Readiness: Postgres and broker reachable", 200, "ReadyOut", auth=False, extra=(503,))},
            "/v1/sessions": {
                "post": _described(
                    _op("Sign in; returns a bearer token", 201, "LoginOut", body=_ref("LoginBody"), auth=False, extra=(400, 401, 429, 503)),
                    "The session expires after BANKHUB_SESSION_TTL_HOURS (default 12), and at the latest "
                    "BANKHUB_SESSION_MAX_LIFETIME_HOURS (default 24) after this sign-in, however often it is refreshed. "
                    "Five failures in a row lock the account for 15 minutes.",
                    {
                        401: "`unauthorized`, \"wrong username or password\": the same status, body and timing for an "
                        "unknown username, a disabled or locked account and a wrong password (a locked account refuses "
                        "even the right password; the lock is never disclosed here)",
                        429: "`rate_limited`: too many attempts from this address or against this username (Retry-After)",
                        503: "`unavailable`: the rate limiter or the database is down; credential checks fail closed",
                    },
                ),
                "get": _paged(_op("My active sessions, newest first (paged)", 200, "SessionList")),
                "delete": _with_params(
                    _op("Revoke all my sessions (?keep_current=true keeps this one)", 200, "RevokedOut"),
                    {"name": "keep_current", "in": "query", "required": False, "schema": {"type": "boolean", "default": False}},
                ),
            },
            "/v1/sessions/current": {"delete": _op("Sign out (revoke this session)", 204, None)},
            "/v1/sessions/refresh": {
                "post": _described(
                    _op("Trade this token for a fresh one; the old one stops working", 201, "LoginOut"),
                    "The new session keeps the time of the password sign-in and expires at "
                    "min(now + BANKHUB_SESSION_TTL_HOURS, signed-in time + BANKHUB_SESSION_MAX_LIFETIME_HOURS).",
                    {
                        401: "`unauthorized`: invalid, expired or revoked token (also the loser of two refreshes of one "
                        "token); `reauthentication_required`: the session already ends at its absolute lifetime and "
                        "cannot be extended; sign in with the password again",
                    },
                )
            },
            "/v1/sessions/{session_id}": {"delete": _op("Revoke one of my sessions", 204, None, extra=(404,))},
            "/v1/me/password": {
                "post": _op("Change my password; my other sessions end", 200, "PasswordChangedOut", body=_ref("PasswordBody"), extra=(400, 403, 429))
            },
            "/v1/customers/{username}/rm": {
                "put": _op(
                    "Reassign a customer to another RM (administrators); the old RM loses access at once (403 also when "
                    "an information barrier separates the customer and the RM)",
                    200,
                    "UserOut",
                    body=_ref("AssignBody"),
                    extra=(400, 403, 404),
                )
            },
            "/v1/users/{username}/role": {
                "put": _also(
                    _op(
                        "Change a user's role (administrators); their sessions end. Into an administrative or compliance "
                        "role it is only requested (202): a second administrator approves it at /v1/admin-requests",
                        200,
                        "UserOut",
                        body=_ref("RoleBody"),
                        extra=(400, 403, 404, 409),
                    ),
                    202,
                    "AdminRequestView",
                    "Accepted: the role is under dual control; the pending request a second administrator decides",
                )
            },
            "/v1/admin-requests": {
                "get": _paged(
                    _op(
                        "Pending dual-control requests I filed or may decide (administrators), oldest first (paged)",
                        200,
                        "AdminRequestList",
                        extra=(400, 403),
                    )
                )
            },
            "/v1/admin-requests/{request_id}/approve": {
                "post": _described(
                    _op("Approve a pending request: the account is created or the role granted", 200, "AdminRequestView", extra=(403, 404, 409)),
                    "Dual control: a second, existing administrator with authority over the account's org approves; the "
                    "requester never can. Head office approves any request; a branch admin only a branch admin of its own "
                    "subtree. Audited (admin_request.approved with user.created or user.role_changed).",
                    {
                        403: "`forbidden`: you filed this request, it concerns your own account, or the role is above yours",
                        404: "`not_found`: no such request, or not in an org you administer",
                        409: "`conflict`: the request is no longer pending, has expired (72 hours), the username is taken, or "
                        "the requester may no longer make it",
                    },
                )
            },
            "/v1/admin-requests/{request_id}/reject": {
                "post": _described(
                    _op("Reject a pending request (or withdraw my own)", 200, "AdminRequestView", extra=(403, 404, 409)),
                    "Audited as admin_request.rejected (details.withdrawn when the requester withdrew it).",
                    {
                        403: "`forbidden`: not an administrator who may decide it",
                        404: "`not_found`: no such request, or not in an org you administer",
                        409: "`conflict`: the request is no longer pending, or has expired",
                    },
                )
            },
            "/v1/ws-tickets": {"post": _op("A single-use 30-second ticket for a browser WebSocket", 201, "TicketOut")},
            "/v1/me": {"get": _op("The signed-in user", 200, "UserOut")},
            "/v1/conversations": {
                "get": _paged(_op("My conversations with unread counts, most recent activity first (paged)", 200, "ConversationList")),
                "post": _group_full(_also(
                    _op(
                        "Open a direct conversation (200 if it existed) or create a group (403 also across an information barrier)",
                        201,
                        "ConversationOut",
                        body={"oneOf": [_ref("DirectBody"), _ref("GroupBody")]},
                        extra=(400, 403, 404, 409),
                    ),
                    200,
                    "ConversationOut",
                    "The direct conversation existed already",
                )),
            },
            "/v1/conversations/{conversation_id}/messages": {"get": history},
            "/v1/compliance/conversations/{conversation_id}/messages": {"get": privileged},
            **account_routes.openapi_paths(_op, _ref),
            **contact_routes.openapi_paths(_op, _ref),
            **alert_routes.openapi_paths(_op, _ref),
            **media_routes.openapi_paths(_op, _ref),
            **service_routes.openapi_paths(_op, _ref),
            **presence_routes.openapi_paths(_op, _ref),
            **group_routes.openapi_paths(_op, _ref),
            **card_routes.openapi_paths(_op, _ref),
            **web_routes.openapi_paths(_op, _ref),
            **widget_routes.openapi_paths(_op, _ref),
            **barriers_routes.openapi_paths(_op, _ref),
            **compliance_console_routes.openapi_paths(_op, _ref),
            **holds_routes.openapi_paths(_op, _ref),
            **retention_routes.openapi_paths(_op, _ref),
            **exports_routes.openapi_paths(_op, _ref),
            **dlp_routes.openapi_paths(_op, _ref),
            **supervision_routes.openapi_paths(_op, _ref),
            **metrics_routes.openapi_paths(_op, _ref),
        },
    })
