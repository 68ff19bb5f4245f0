"""HTTP handlers for alerts: the signed ingest API, the inbox, preferences, dead letters.

Calling systems authenticate every request with an HMAC signature (``docs/alerts.md``),
never with a bearer token; customers and administrators use their bearer token as for
the rest of the API. Handlers stay thin: read, call an action, encode.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import TYPE_CHECKING, Annotated, Any

import msgspec
from msgspec import Meta
from starlette.requests import Request
from starlette.responses import Response

from ..actions import alerts as alert_actions
from ..actions.errors import ActionError
from ..protocol.frames import Alert, AlertId, InboxUpdate, Seq
from .handler import RouteTable, SignedCall, client_ip, decode_json, read_json
from .problems import json_response
from .paging import BEFORE_SEQ, CURSOR_PARAM, PAGE_LIMIT, Cursor, IntParam, encode_cursor
from .params import ALERT_ID, INBOX_STATE

if TYPE_CHECKING:
    from ..hub import Hub
    from ..models import Session

__all__ = ["ROUTES", "OPENAPI_TYPES", "openapi_paths", "MAX_SINGLE_BYTES", "MAX_BATCH_BYTES"]

ROUTES = RouteTable()

MAX_SINGLE_BYTES = 16 * 1024
MAX_BATCH_BYTES = 512 * 1024

INBOX_STATES = ("inbox", "unread", "read", "archived", "all")  # actions.alerts.list_inbox
DEAD_LETTER_LIMIT = IntParam("limit", 1, 500, 100, "page size")
DeadLetterKey = tuple[dt.datetime, uuid.UUID]
DEAD_LETTER_CURSOR = Cursor[DeadLetterKey](DeadLetterKey)


class MarkBody(msgspec.Struct, forbid_unknown_fields=True):
    alert_ids: Annotated[list[AlertId], Meta(max_length=500)] = []
    up_to_seq: Seq | None = None


class ReplayBody(msgspec.Struct, forbid_unknown_fields=True):
    alert_ids: Annotated[list[AlertId], Meta(max_length=1000)] | None = None
    all: bool = False


class FallbackOut(msgspec.Struct):
    state: str
    attempts: int
    next_at: str | None
    last_error: str | None
    cancel_reason: str | None
    sent_at: str | None
    dead_at: str | None


class NotificationOut(msgspec.Struct):
    alert_id: str
    status: str
    recipient: str | None
    category: str
    priority: str
    template: str
    created_at: str
    expires_at: str | None
    expired: bool
    suppressed_reason: str | None
    delivered_at: str | None
    read_at: str | None
    superseded_by: str | None
    replaces: str | None
    silent: bool
    fallback: FallbackOut | None


class NotificationEnvelope(msgspec.Struct):
    notification: NotificationOut


class NotificationList(msgspec.Struct):
    notifications: list[NotificationOut]


class DeadLetterPage(msgspec.Struct):
    notifications: list[NotificationOut]
    next_cursor: str | None  # more follow: pass it as ?cursor=


class InboxPage(msgspec.Struct):
    alerts: list[Alert]
    has_more: bool
    unread: int
    last_seq: int


class UnreadOut(msgspec.Struct):
    unread: int
    last_seq: int


class QuietHoursOut(msgspec.Struct):
    start: str
    end: str


class PreferencesOut(msgspec.Struct):
    muted: list[str]
    quiet_hours: QuietHoursOut | None
    timezone: str
    locale: str
    categories: list[str]
    mutable: list[str]


class ReplayOut(msgspec.Struct):
    replayed: list[str]


# --- signed requests ----------------------------------------------------------------------


def _ingested(data: dict[str, Any], replayed: bool) -> Response:
    """The answer to an ingest: 201, or 200 with ``Idempotent-Replayed: true`` for a retry."""
    response = json_response(data, 200 if replayed else 201)
    if replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return response


@ROUTES.signed("POST", "/v1/notifications", max_bytes=MAX_SINGLE_BYTES, json_body=True, deferred=True)
async def post_notification(request: Request, hub: Hub, call: SignedCall) -> Response:
    item = decode_json(call.body, alert_actions.NotificationIn)
    assert call.matched is not None  # a deferred route: the group commit checks system, nonce and rate limit
    replayed, alerts = await alert_actions.ingest_single(hub, call.system, call.headers, call.matched, call.body, item, client_ip(request))
    return _ingested({"notification": alert_actions.notification_json(alerts[0], item.recipient)}, replayed)


@ROUTES.signed("POST", "/v1/notifications/batch", max_bytes=MAX_BATCH_BYTES, json_body=True)
async def post_batch(request: Request, hub: Hub, call: SignedCall) -> Response:
    batch = decode_json(call.body, alert_actions.BatchIn)
    replayed, alerts = await alert_actions.ingest(hub, call.system, call.headers.idempotency_key, call.body, batch.notifications, batch=True)
    out = [alert_actions.notification_json(a, n.recipient) for a, n in zip(alerts, batch.notifications, strict=True)]
    return _ingested({"notifications": out}, replayed)


@ROUTES.signed("GET", "/v1/notifications/{alert_id}", max_bytes=0, json_body=False)
async def get_notification(request: Request, hub: Hub, call: SignedCall) -> Response:
    return json_response({"notification": await alert_actions.alert_status(hub, call.system, ALERT_ID.value(request))})


# --- the customer's inbox and preferences -----------------------------------------------------


@ROUTES.authenticated("GET", "/v1/inbox")
async def inbox(request: Request, hub: Hub, session: Session) -> Response:
    page = await alert_actions.list_inbox(
        hub,
        session.user,
        INBOX_STATE.read(request) or "inbox",
        BEFORE_SEQ.read(request),
        PAGE_LIMIT.read_default(request),
    )
    return json_response(page)


@ROUTES.authenticated("GET", "/v1/inbox/unread")
async def unread(request: Request, hub: Hub, session: Session) -> Response:
    counts = await alert_actions.unread_count(hub, session.user)
    return json_response({"unread": counts.unread, "last_seq": counts.last_seq})


async def _mark(request: Request, hub: Hub, session: Session, state: str) -> Response:
    body: MarkBody = await read_json(request, MarkBody)
    update = await alert_actions.mark(hub, session.user, state, body.alert_ids, body.up_to_seq)
    return json_response(update)


@ROUTES.authenticated("POST", "/v1/inbox/read")
async def mark_read(request: Request, hub: Hub, session: Session) -> Response:
    return await _mark(request, hub, session, "read")


@ROUTES.authenticated("POST", "/v1/inbox/archive")
async def archive(request: Request, hub: Hub, session: Session) -> Response:
    return await _mark(request, hub, session, "archived")


@ROUTES.authenticated("GET", "/v1/me/alert-preferences")
async def get_preferences(request: Request, hub: Hub, session: Session) -> Response:
    prefs = await alert_actions.get_preferences(hub, session.user)
    return json_response(alert_actions.preferences_json(prefs))


@ROUTES.authenticated("PUT", "/v1/me/alert-preferences")
async def put_preferences(request: Request, hub: Hub, session: Session) -> Response:
    body: alert_actions.PreferencesIn = await read_json(request, alert_actions.PreferencesIn)
    prefs = await alert_actions.set_preferences(hub, session.user, body)
    return json_response(alert_actions.preferences_json(prefs))


# --- operators ----------------------------------------------------------------------------------


@ROUTES.authenticated("GET", "/v1/admin/alerts/dead-letters")
async def dead_letters(request: Request, hub: Hub, session: Session) -> Response:
    out, next_key = await alert_actions.dead_letters(
        hub, session.user, DEAD_LETTER_LIMIT.read_default(request), after=DEAD_LETTER_CURSOR.read(request)
    )
    return json_response({"notifications": out, "next_cursor": None if next_key is None else encode_cursor(next_key)})


@ROUTES.authenticated("POST", "/v1/admin/alerts/dead-letters/replay")
async def replay(request: Request, hub: Hub, session: Session) -> Response:
    body: ReplayBody = await read_json(request, ReplayBody)
    if body.all == (body.alert_ids is not None):
        raise ActionError("invalid_request", 'send {"alert_ids": [...]} or {"all": true}')
    replayed = await alert_actions.replay_dead_letters(hub, session.user, body.alert_ids, ip=client_ip(request))
    return json_response({"replayed": replayed})


OPENAPI_TYPES: list[Any] = [
    alert_actions.NotificationIn,
    alert_actions.BatchIn,
    alert_actions.PreferencesIn,
    MarkBody,
    ReplayBody,
    NotificationEnvelope,
    NotificationList,
    DeadLetterPage,
    InboxPage,
    InboxUpdate,
    UnreadOut,
    PreferencesOut,
    ReplayOut,
]

_SIGNED_HEADERS = [
    {"name": "X-Bankhub-System", "in": "header", "required": True, "schema": {"type": "string"}},
    {"name": "X-Bankhub-Timestamp", "in": "header", "required": True, "schema": {"type": "string", "pattern": "^[0-9]+$"}},
    {"name": "X-Bankhub-Nonce", "in": "header", "required": True, "schema": {"type": "string", "pattern": "^[A-Za-z0-9_-]{16,64}$"}},
    {"name": "X-Bankhub-Signature", "in": "header", "required": True, "schema": {"type": "string", "pattern": "^v1=[0-9a-f]{64}$"}},
]
_IDEMPOTENCY = {"name": "Idempotency-Key", "in": "header", "required": True, "schema": {"type": "string", "maxLength": 128}}


def openapi_paths(op: Any, ref: Any) -> dict[str, Any]:
    """The OpenAPI paths of this module (``op`` and ``ref`` are openapi.py's builders)."""

    def signed(o: dict[str, Any], *params: dict[str, Any]) -> dict[str, Any]:
        o["security"] = []  # HMAC-signed, see docs/alerts.md; no bearer token
        o["parameters"] = [*_SIGNED_HEADERS, *params]
        o["responses"]["401"] = {
            "description": "Problem",
            "content": {"application/problem+json": {"schema": ref("Problem")}},
        }
        return o

    status = signed(
        op("Delivery status of an alert the calling system sent (signed)", 200, "NotificationEnvelope", auth=False, extra=(404, 429)),
        {"name": "alert_id", "in": "path", "required": True, "schema": {"type": "string", "format": "uuid"}},
    )
    inbox_op = op("My alerts, newest first (?state=inbox|unread|read|archived|all&before_seq=&limit=)", 200, "InboxPage", extra=(400, 403))
    inbox_op["description"] = "Paged by seq: pass the oldest seq of this page as ?before_seq= while has_more is true."
    inbox_op["parameters"] = [
        {"name": "state", "in": "query", "required": False, "schema": {"type": "string", "enum": list(INBOX_STATES), "default": "inbox"}},
        BEFORE_SEQ.openapi(),
        PAGE_LIMIT.openapi(),
    ]
    dead_op = op("Alerts the fallback channel gave up on, newest first (head office)", 200, "DeadLetterPage", extra=(403,))
    dead_op["description"] = "Paged: pass next_cursor (null on the last page) back unchanged as ?cursor= for the next page."
    dead_op["parameters"] = [CURSOR_PARAM, DEAD_LETTER_LIMIT.openapi()]

    def replayed(o: dict[str, Any], out: str) -> dict[str, Any]:
        o["responses"]["200"] = {
            "description": "A retry with the same Idempotency-Key and body: the original answer, Idempotent-Replayed: true",
            "headers": {"Idempotent-Replayed": {"required": True, "schema": {"type": "string", "enum": ["true"]}}},
            "content": {"application/json": {"schema": ref(out)}},
        }
        return o

    def ingest(summary: str, out: str, body: str) -> dict[str, Any]:
        created = op(summary, 201, out, body=ref(body), auth=False, extra=(400, 403, 404, 409, 413, 415, 422, 429))
        return replayed(signed(created, _IDEMPOTENCY), out)

    return {
        "/v1/notifications": {
            "post": ingest(
                "A calling system sends one alert (signed; 200 + Idempotent-Replayed on a retry)", "NotificationEnvelope", "NotificationIn"
            )
        },
        "/v1/notifications/batch": {"post": ingest("A calling system sends up to 100 alerts, all or nothing (signed)", "NotificationList", "BatchIn")},
        "/v1/notifications/{alert_id}": {"get": status},
        "/v1/inbox": {"get": inbox_op},
        "/v1/inbox/unread": {"get": op("My unread alert count", 200, "UnreadOut")},
        "/v1/inbox/read": {"post": op("Mark alerts read (by id and/or up to a seq)", 200, "InboxUpdate", body=ref("MarkBody"), extra=(400,))},
        "/v1/inbox/archive": {"post": op("Archive alerts (by id and/or up to a seq)", 200, "InboxUpdate", body=ref("MarkBody"), extra=(400,))},
        "/v1/me/alert-preferences": {
            "get": op("My alert preferences", 200, "PreferencesOut"),
            "put": op("Set my alert preferences (security alerts cannot be muted)", 200, "PreferencesOut", body=ref("PreferencesIn"), extra=(400,)),
        },
        "/v1/admin/alerts/dead-letters": {"get": dead_op},
        "/v1/admin/alerts/dead-letters/replay": {
            "post": op("Requeue dead letters (head office; audited)", 200, "ReplayOut", body=ref("ReplayBody"), extra=(400, 403))
        },
    }
