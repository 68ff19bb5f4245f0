"""HTTP handlers for dual control of administrative accounts (thin: decode, act, encode).

``POST /v1/users`` with an administrative role and ``PUT /v1/users/{username}/role`` into
one answer ``202`` with a pending request (see :mod:`bankhub.actions.users`); a second
administrator lists, approves or rejects it here.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import TYPE_CHECKING, Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from .. import text
from ..actions import admin_requests as request_actions
from ..actions.users import AdminRequestView
from ..models import RequestKey
from .handler import RouteTable, client_ip
from .paging import PAGE_LIMIT, Cursor, encode_cursor
from .params import TextParam
from .problems import json_response

if TYPE_CHECKING:
    from ..hub import Hub
    from ..models import Session

__all__ = ["ROUTES", "OPENAPI_TYPES", "REQUEST_ID"]

ROUTES = RouteTable()

REQUEST_ID = TextParam("request_id", text.Id, "path")
ADMIN_REQUEST_CURSOR = Cursor[tuple[dt.datetime, uuid.UUID]](tuple[dt.datetime, uuid.UUID])


class AdminRequestList(msgspec.Struct):
    """Pending requests, oldest first; ``next_cursor`` is null on the last page."""

    requests: list[AdminRequestView]
    next_cursor: str | None = None


def _cursor(request: Request) -> RequestKey | None:
    key = ADMIN_REQUEST_CURSOR.read(request)
    return None if key is None else (key[0], str(key[1]))


@ROUTES.authenticated("GET", "/v1/admin-requests")
async def list_requests(request: Request, hub: Hub, session: Session) -> Response:
    found, next_key = await request_actions.list_pending(
        hub, session.user, after=_cursor(request), limit=PAGE_LIMIT.read_default(request)
    )
    return json_response(AdminRequestList(requests=found, next_cursor=None if next_key is None else encode_cursor(next_key)))


@ROUTES.authenticated("POST", "/v1/admin-requests/{request_id}/approve")
async def approve_request(request: Request, hub: Hub, session: Session) -> Response:
    return json_response(await request_actions.approve(hub, session.user, REQUEST_ID.value(request), ip=client_ip(request)))


@ROUTES.authenticated("POST", "/v1/admin-requests/{request_id}/reject")
async def reject_request(request: Request, hub: Hub, session: Session) -> Response:
    return json_response(await request_actions.reject(hub, session.user, REQUEST_ID.value(request), ip=client_ip(request)))


OPENAPI_TYPES: list[Any] = [AdminRequestView, AdminRequestList]
