"""HTTP handlers of legal holds (thin: decode, act, encode). See docs/compliance.md, "Legal hold".

* ``POST /v1/compliance/holds`` ``{name, case_ref?, custodian?, conversation_id?, from?, to?}``
  → 201 ``Hold``;
* ``GET /v1/compliance/holds?state=&cursor=&limit=`` → ``{holds, next_cursor}``, newest first;
* ``GET /v1/compliance/holds/{hold_id}`` → ``Hold``;
* ``POST /v1/compliance/holds/{hold_id}/release`` ``{reason}`` → 202 (``release_pending``);
* ``POST /v1/compliance/holds/{hold_id}/release/approve`` → 200 (``released``; a second
  officer only: the requester gets 403 ``forbidden``);
* ``POST /v1/compliance/holds/{hold_id}/release/reject`` → 200 (``active`` again).

Compliance officers only: anyone else gets 403 ``forbidden``.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import TYPE_CHECKING, Annotated, Any

import msgspec
from msgspec import Meta
from starlette.requests import Request
from starlette.responses import Response

from .. import text
from ..actions import holds as hold_actions
from ..actions.errors import ActionError
from ..compliance.holds import HOLD_STATES, MAX_CASE_REF_CHARS, MAX_NAME_CHARS, MAX_REASON_CHARS, HoldState
from .handler import RouteTable, client_ip, read_json
from .paging import CURSOR_PARAM, PAGE_LIMIT, Cursor, cursor_page
from .params import LIST_STATE, TextParam
from .problems import json_response

if TYPE_CHECKING:
    from ..hub import Hub
    from ..models import Session

__all__ = ["ROUTES", "OPENAPI_TYPES", "openapi_paths", "HOLD_ID"]

ROUTES = RouteTable()

HOLD_ID = TextParam("hold_id", text.Id, "path")
HOLD_CURSOR = Cursor[tuple[dt.datetime, str]](tuple[dt.datetime, str])

Instant = Annotated[dt.datetime, Meta(tz=True, description="RFC 3339, with an offset")]


class NewHoldBody(msgspec.Struct, forbid_unknown_fields=True):
    """A hold: a custodian (username), a conversation, or both; ``from`` inclusive, ``to`` exclusive."""

    name: Annotated[text.Line, Meta(min_length=1, max_length=MAX_NAME_CHARS)]
    case_ref: Annotated[text.Line, Meta(min_length=1, max_length=MAX_CASE_REF_CHARS)] | None = None
    custodian: text.Username | None = None
    conversation_id: text.Id | None = None
    from_: Instant | None = msgspec.field(default=None, name="from")
    to: Instant | None = None


class HoldReleaseBody(msgspec.Struct, forbid_unknown_fields=True):
    reason: Annotated[text.Line, Meta(min_length=1, max_length=MAX_REASON_CHARS)]


class HoldList(msgspec.Struct):
    holds: list[hold_actions.HoldView]
    next_cursor: str | None  # more follow: pass it as ?cursor=


def _state(request: Request) -> HoldState | None:
    raw = LIST_STATE.read(request)
    if raw is None:
        return None
    for state in HOLD_STATES:
        if raw == state:
            return state
    raise ActionError("invalid_request", f"state must be one of {', '.join(HOLD_STATES)}")


def _after(key: tuple[dt.datetime, str] | None) -> tuple[dt.datetime, str] | None:
    if key is not None:
        try:
            uuid.UUID(key[1])
        except ValueError:
            raise ActionError("invalid_request", "cursor is not a next_cursor of this list") from None
    return key


@ROUTES.authenticated("POST", "/v1/compliance/holds")
async def place_hold(request: Request, hub: Hub, session: Session) -> Response:
    body: NewHoldBody = await read_json(request, NewHoldBody)
    hold = await hold_actions.place(
        hub,
        session.user,
        name=body.name,
        case_ref=body.case_ref,
        custodian=body.custodian,
        conversation_id=body.conversation_id,
        from_at=body.from_,
        to_at=body.to,
        ip=client_ip(request),
    )
    return json_response(hold, 201)


@ROUTES.authenticated("GET", "/v1/compliance/holds")
async def list_holds(request: Request, hub: Hub, session: Session) -> Response:
    state = _state(request)
    page, next_cursor = await cursor_page(
        request,
        HOLD_CURSOR,
        lambda after, limit: hold_actions.page(hub, session.user, state=state, after=_after(after), limit=limit),
        lambda entry: entry[1],
    )
    return json_response(HoldList(holds=[h for h, _ in page], next_cursor=next_cursor))


@ROUTES.authenticated("GET", "/v1/compliance/holds/{hold_id}")
async def get_hold(request: Request, hub: Hub, session: Session) -> Response:
    return json_response(await hold_actions.get(hub, session.user, HOLD_ID.value(request)))


@ROUTES.authenticated("POST", "/v1/compliance/holds/{hold_id}/release")
async def request_release(request: Request, hub: Hub, session: Session) -> Response:
    hold_id = HOLD_ID.value(request)
    body: HoldReleaseBody = await read_json(request, HoldReleaseBody)
    return json_response(await hold_actions.request_release(hub, session.user, hold_id, body.reason, ip=client_ip(request)), 202)


@ROUTES.authenticated("POST", "/v1/compliance/holds/{hold_id}/release/approve")
async def approve_release(request: Request, hub: Hub, session: Session) -> Response:
    return json_response(await hold_actions.approve_release(hub, session.user, HOLD_ID.value(request), ip=client_ip(request)))


@ROUTES.authenticated("POST", "/v1/compliance/holds/{hold_id}/release/reject")
async def reject_release(request: Request, hub: Hub, session: Session) -> Response:
    return json_response(await hold_actions.reject_release(hub, session.user, HOLD_ID.value(request), ip=client_ip(request)))


OPENAPI_TYPES = [NewHoldBody, HoldReleaseBody, HoldList, hold_actions.HoldView, hold_actions.HoldCustodian]


def openapi_paths(op: Any, ref: Any) -> dict[str, Any]:
    """The OpenAPI paths of this module (``op`` and ``ref`` are openapi.py's builders)."""
    not_officer = "`forbidden`: not an active compliance officer"
    no_hold = "`not_found`: no hold with that id"

    def said(o: dict[str, Any], description: str | None = None, **codes: str) -> dict[str, Any]:
        for status, meaning in codes.items():
            o["responses"][status[1:]]["description"] = meaning
        if description:
            o["description"] = description
        return o

    def on_hold(o: dict[str, Any]) -> dict[str, Any]:
        # {hold_id} is declared from openapi.PATH_PARAMETERS (a uuid; any other id answers 404)
        return o

    listing = said(
        op("Legal holds, newest first, optionally of one state (compliance officers)", 200, "HoldList", extra=(400, 403)),
        "Paged: pass next_cursor (null on the last page) back unchanged as ?cursor= for the next page.",
        s400="`invalid_request`: a state other than active, release_pending, released; a malformed cursor or limit",
        s403=not_officer,
    )
    listing["parameters"] = [
        {
            "name": "state",
            "in": "query",
            "required": False,
            "schema": {"type": "string", "enum": list(HOLD_STATES)},
            "description": "active (no release requested), release_pending (still active), released",
        },
        CURSOR_PARAM,
        PAGE_LIMIT.openapi(),
    ]
    return {
        "/v1/compliance/holds": {
            "post": said(
                op("Place a legal hold by custodian, conversation and date range", 201, "HoldView", body=ref("NewHoldBody"), extra=(400, 403, 404)),
                "One transaction takes the holds lock exclusive, inserts the hold and records `hold.placed`: a purge "
                "batch or shred in flight finishes first, every later one sees the hold. The custodian covers every "
                "conversation they were ever a member of; from is inclusive, to exclusive (message created_at).",
                s400="`invalid_request`: neither custodian nor conversation_id; from not before to; a time without an "
                "offset; a name not 1-120 characters of one line; a case_ref over 64",
                s403=not_officer,
                s404="`not_found`: no user with that custodian username, or no such conversation",
            ),
            "get": listing,
        },
        "/v1/compliance/holds/{hold_id}": {
            "get": on_hold(said(op("A legal hold", 200, "HoldView", extra=(400, 403, 404)), s400="`invalid_request`: a malformed hold id", s403=not_officer, s404=no_hold))
        },
        "/v1/compliance/holds/{hold_id}/release": {
            "post": on_hold(
                said(
                    op("Request the release of a hold (the first of two officers)", 202, "HoldView", body=ref("HoldReleaseBody"), extra=(400, 403, 404, 409)),
                    "The hold becomes release_pending and stays active until a second compliance officer approves. "
                    "Recorded as `hold.release_requested` with the reason.",
                    s400="`invalid_request`: no reason, or one over 500 characters or not one line",
                    s403=not_officer,
                    s404=no_hold,
                    s409="`conflict`: the hold is released, or a release is already waiting",
                )
            )
        },
        "/v1/compliance/holds/{hold_id}/release/approve": {
            "post": on_hold(
                said(
                    op("Approve a requested release (a second compliance officer)", 200, "HoldView", extra=(400, 403, 404, 409)),
                    "Dual control: the approver is an active compliance officer other than the requester, both checked "
                    "when deciding. The hold is released (`hold.released`) and protects nothing from then on.",
                    s403="`forbidden`: not an active compliance officer, or the requester themselves (a second "
                    "compliance officer must approve)",
                    s404=no_hold,
                    s409="`conflict`: no release waiting, already released, the requester is no longer an active "
                    "compliance officer, or the request is older than BANKHUB_HOLD_RELEASE_TTL_HOURS",
                )
            )
        },
        "/v1/compliance/holds/{hold_id}/release/reject": {
            "post": on_hold(
                said(
                    op("Reject or withdraw a requested release: the hold is active again", 200, "HoldView", extra=(400, 403, 404, 409)),
                    "Any active compliance officer, the requester included. Recorded as `hold.release_rejected`.",
                    s403=not_officer,
                    s404=no_hold,
                    s409="`conflict`: no release waiting, or already released",
                )
            )
        },
    }
