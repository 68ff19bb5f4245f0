"""HTTP handlers for dual control of administrative accounts (thin: decode, act, encode).

``POST /v1/users`` with an administrative role and ``PUT /v1/users/{username}/role`` into
one answer ``202`` with a pending request (see :mod:`bankhub.actions.users`); a second
administrator lists, approves or rejects it here.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from .. import text
from ..actions import admin_requests as request_actions
from ..actions.users import AdminRequestView
from ..storage.admin_requests import RequestKey
from .auth import require_session
from .paging import PAGE_LIMIT, Cursor, encode_cursor
from .params import TextParam
from .problems import json_response
from .routes import Handler, _client_ip, _hub

__all__ = ["ROUTES", "OPENAPI_TYPES", "REQUEST_ID"]

REQUEST_ID = TextParam("request_id", text.Id, "path")
ADMIN_REQUEST_CURSOR = Cursor[tuple[dt.datetime, uuid.UUID]](tuple[dt.datetime, uuid.UUID])


class AdminRequestList(msgspec.Struct):
    """Pending requests, oldest first; ``next_cursor`` is null on the last page."""

    requests: list[AdminRequestView]
    next_cursor: str | None = None


def _cursor(request: Request) -> RequestKey | None:
    key = ADMIN_REQUEST_CURSOR.read(request)
    return None if key is None else (key[0], str(key[1]))


async def list_requests(request: Request) -> Response:
    hub = _hub(request)
    session = await require_session(hub, request)
    found, next_key = await request_actions.list_pending(
        hub, session.user, after=_cursor(request), limit=PAGE_LIMIT.read_default(request)
    )
    return json_response(AdminRequestList(requests=found, next_cursor=None if next_key is None else encode_cursor(next_key)))


async def approve_request(request: Request) -> Response:
    hub = _hub(request)
    session = await require_session(hub, request)
    return json_response(await request_actions.approve(hub, session.user, REQUEST_ID.value(request), ip=_client_ip(request)))


async def reject_request(request: Request) -> Response:
    hub = _hub(request)
    session = await require_session(hub, request)
    return json_response(await request_actions.reject(hub, session.user, REQUEST_ID.value(request), ip=_client_ip(request)))


ROUTES: list[tuple[str, Handler, list[str]]] = [
    ("/v1/admin-requests", list_requests, ["GET"]),
    ("/v1/admin-requests/{request_id}/approve", approve_request, ["POST"]),
    ("/v1/admin-requests/{request_id}/reject", reject_request, ["POST"]),
]

OPENAPI_TYPES: list[Any] = [AdminRequestView, AdminRequestList]
