"""HTTP handlers for relationship managers and the service desk (thin: decode, act, encode)."""

from __future__ import annotations

import datetime as dt
import re
from typing import TYPE_CHECKING, Annotated, Any, Literal

import msgspec
from msgspec import Meta
from starlette.requests import Request
from starlette.responses import Response

from ..actions import rm as rm_actions
from ..actions import service as service_actions
from ..actions.errors import ActionError
from .. import text
from .handler import RouteTable, client_ip, read_json
from .problems import json_response
from ..models import BookKey, RmListed
from .paging import CURSOR_PARAM, PAGE_LIMIT, Cursor, cursor_page, encode_cursor
from .params import QUEUE_CODE, RM, SESSION_ID, SINCE, USERNAME

if TYPE_CHECKING:
    from ..hub import Hub
    from ..models import Session

__all__ = ["ROUTES", "OPENAPI_TYPES", "openapi_paths"]

ROUTES = RouteTable()

_RFC3339 = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?([Zz]|[+-][0-9]{2}:[0-9]{2})", re.ASCII)
BOOK_CURSOR = Cursor[BookKey](BookKey)
QUEUE_CURSOR = Cursor[tuple[str]](tuple[str])
RM_CURSOR = Cursor[tuple[str]](tuple[str])


class AvailabilityBody(msgspec.Struct, forbid_unknown_fields=True):
    status: Literal["online", "away", "off_duty"]
    message: Annotated[text.Text, Meta(max_length=500)] | None = None  # my auto-reply while away or off duty (default: a standard one)


class HandoverBody(msgspec.Struct, forbid_unknown_fields=True):
    to: text.Username  # the RM taking over
    customers: Annotated[list[text.Username], Meta(max_length=rm_actions.MAX_HANDOVER)] | None = None  # omitted: the whole book


class OpenSessionBody(msgspec.Struct, forbid_unknown_fields=True):
    queue: text.QueueCode | None = None  # default: general


class TransferBody(msgspec.Struct, forbid_unknown_fields=True):
    note: Annotated[text.Text, Meta(max_length=service_actions.MAX_NOTE)]  # for the next agent only, never shown to the customer
    queue: text.QueueCode | None = None
    agent: text.Username | None = None


class CloseBody(msgspec.Struct, forbid_unknown_fields=True):
    tags: Annotated[list[text.Tag], Meta(max_length=32)]
    note: Annotated[text.Text, Meta(max_length=service_actions.MAX_NOTE)] | None = None


class CsatBody(msgspec.Struct, forbid_unknown_fields=True):
    score: Annotated[int, Meta(ge=1, le=5)]
    comment: Annotated[text.Text, Meta(max_length=1000)] | None = None


class AgentStateBody(msgspec.Struct, forbid_unknown_fields=True):
    state: Literal["available", "busy", "away"]


class AgentConfigBody(msgspec.Struct, forbid_unknown_fields=True):
    capacity: Annotated[int, Meta(ge=1, le=50)] | None = None
    queues: Annotated[list[text.QueueCode], Meta(max_length=50)] | None = None


class QueueBody(msgspec.Struct, forbid_unknown_fields=True):
    name: Annotated[text.Line, Meta(min_length=1, max_length=64)]
    timezone: Annotated[text.Line, Meta(max_length=64)] = "Asia/Shanghai"
    days: Annotated[list[Annotated[int, Meta(ge=1, le=7)]], Meta(max_length=7)] = msgspec.field(default_factory=lambda: [1, 2, 3, 4, 5, 6, 7])  # ISO weekdays
    open: Annotated[text.Line, Meta(max_length=5)] = "00:00"
    close: Annotated[text.Line, Meta(max_length=5)] = "24:00"
    out_of_hours_text: Annotated[text.Text, Meta(max_length=1000)] = ""


class QueueList(msgspec.Struct):
    queues: list[service_actions.QueueView]
    next_cursor: str | None  # more follow: pass it as ?cursor=


class RmList(msgspec.Struct):
    managers: list[RmListed]
    next_cursor: str | None  # more follow: pass it as ?cursor=


class TagList(msgspec.Struct):
    tags: dict[str, str]


# --- relationship managers -----------------------------------------------------------------


@ROUTES.authenticated("GET", "/v1/rm/book")
async def rm_book(request: Request, hub: Hub, session: Session) -> Response:
    book, next_key = await rm_actions.book(
        hub,
        session.user,
        RM.read(request),
        after=BOOK_CURSOR.read(request),
        limit=PAGE_LIMIT.read_default(request),
    )
    book.next_cursor = None if next_key is None else encode_cursor(next_key)
    return json_response(book)


@ROUTES.authenticated("GET", "/v1/rm/managers")
async def rm_directory(request: Request, hub: Hub, session: Session) -> Response:
    managers, next_cursor = await cursor_page(
        request,
        RM_CURSOR,
        lambda after, limit: rm_actions.managers(hub, session.user, after=None if after is None else after[0], limit=limit),
        lambda m: (m.username,),
    )
    return json_response(RmList(managers=managers, next_cursor=next_cursor))


@ROUTES.authenticated("PUT", "/v1/rm/availability")
async def rm_availability(request: Request, hub: Hub, session: Session) -> Response:
    body: AvailabilityBody = await read_json(request, AvailabilityBody)
    return json_response(await rm_actions.set_status(hub, session.user, body.status, body.message))


@ROUTES.authenticated("GET", "/v1/customers/{username}/card")
async def customer_card(request: Request, hub: Hub, session: Session) -> Response:
    return json_response(await rm_actions.card(hub, session.user, USERNAME.value(request)))


@ROUTES.authenticated("GET", "/v1/me/rm")
async def my_rm(request: Request, hub: Hub, session: Session) -> Response:
    return json_response(await rm_actions.my_rm(hub, session.user))


@ROUTES.authenticated("POST", "/v1/rm/{username}/handover")
async def hand_over(request: Request, hub: Hub, session: Session) -> Response:
    body: HandoverBody = await read_json(request, HandoverBody)
    result = await rm_actions.hand_over_book(
        hub, session.user, USERNAME.value(request), body.to, body.customers, ip=client_ip(request)
    )
    return json_response(result)


# --- service desk --------------------------------------------------------------------------


@ROUTES.authenticated("GET", "/v1/service/queues")
async def list_queues(request: Request, hub: Hub, session: Session) -> Response:
    queues, next_cursor = await cursor_page(
        request,
        QUEUE_CURSOR,
        lambda after, limit: service_actions.queues(hub, session.user, after=None if after is None else after[0], limit=limit),
        lambda q: (q.code,),
    )
    return json_response(QueueList(queues=queues, next_cursor=next_cursor))


@ROUTES.authenticated("PUT", "/v1/service/queues/{code}")
async def put_queue(request: Request, hub: Hub, session: Session) -> Response:
    body: QueueBody = await read_json(request, QueueBody)
    view = await service_actions.put_queue(
        hub,
        session.user,
        QUEUE_CODE.value(request),
        name=body.name,
        timezone=body.timezone,
        days=body.days,
        open_at=body.open,
        close_at=body.close,
        out_of_hours_text=body.out_of_hours_text,
        ip=client_ip(request),
    )
    return json_response(view)


@ROUTES.authenticated("GET", "/v1/service/tags")
async def list_tags(request: Request, hub: Hub, session: Session) -> Response:
    return json_response(TagList(tags=await service_actions.tags(hub, session.user)))


@ROUTES.authenticated("POST", "/v1/service/sessions")
async def open_session(request: Request, hub: Hub, session: Session) -> Response:
    body = OpenSessionBody()
    if request.headers.get("content-length", "0") not in ("", "0") or request.headers.get("transfer-encoding"):
        body = await read_json(request, OpenSessionBody)
    view, created = await service_actions.open_session(hub, session.user, body.queue)
    return json_response(view, 201 if created else 200)


@ROUTES.authenticated("GET", "/v1/service/sessions/current")
async def current_session(request: Request, hub: Hub, session: Session) -> Response:
    return json_response(await service_actions.current_session(hub, session.user))


@ROUTES.authenticated("GET", "/v1/service/sessions/{session_id}")
async def get_session(request: Request, hub: Hub, session: Session) -> Response:
    return json_response(await service_actions.session_detail(hub, session.user, SESSION_ID.value(request)))


@ROUTES.authenticated("POST", "/v1/service/sessions/{session_id}/human")
async def ask_for_person(request: Request, hub: Hub, session: Session) -> Response:
    return json_response(await service_actions.ask_for_person(hub, session.user, SESSION_ID.value(request)))


@ROUTES.authenticated("POST", "/v1/service/sessions/{session_id}/cancel")
async def cancel_session(request: Request, hub: Hub, session: Session) -> Response:
    return json_response(await service_actions.cancel(hub, session.user, SESSION_ID.value(request)))


@ROUTES.authenticated("POST", "/v1/service/sessions/{session_id}/transfer")
async def transfer_session(request: Request, hub: Hub, session: Session) -> Response:
    body: TransferBody = await read_json(request, TransferBody)
    view = await service_actions.transfer(
        hub, session.user, SESSION_ID.value(request), queue=body.queue, agent=body.agent, note=body.note
    )
    return json_response(view)


@ROUTES.authenticated("POST", "/v1/service/sessions/{session_id}/close")
async def close_session(request: Request, hub: Hub, session: Session) -> Response:
    body: CloseBody = await read_json(request, CloseBody)
    return json_response(await service_actions.close(hub, session.user, SESSION_ID.value(request), body.tags, body.note))


@ROUTES.authenticated("POST", "/v1/service/sessions/{session_id}/csat")
async def rate_session(request: Request, hub: Hub, session: Session) -> Response:
    body: CsatBody = await read_json(request, CsatBody)
    return json_response(
        await service_actions.rate(hub, session.user, SESSION_ID.value(request), body.score, body.comment)
    )


@ROUTES.authenticated("GET", "/v1/service/agents/me")
async def my_desk(request: Request, hub: Hub, session: Session) -> Response:
    return json_response(await service_actions.my_desk(hub, session.user))


@ROUTES.authenticated("PUT", "/v1/service/agents/me/state")
async def set_agent_state(request: Request, hub: Hub, session: Session) -> Response:
    body: AgentStateBody = await read_json(request, AgentStateBody)
    return json_response(await service_actions.set_agent_state(hub, session.user, body.state))


@ROUTES.authenticated("PUT", "/v1/service/agents/{username}")
async def put_agent(request: Request, hub: Hub, session: Session) -> Response:
    body: AgentConfigBody = await read_json(request, AgentConfigBody)
    view = await service_actions.put_agent(
        hub, session.user, USERNAME.value(request), capacity=body.capacity, queues=body.queues, ip=client_ip(request)
    )
    return json_response(view)


@ROUTES.authenticated("GET", "/v1/service/figures")
async def figures(request: Request, hub: Hub, session: Session) -> Response:
    since = None
    raw = SINCE.read(request)
    if raw is not None or "since" in request.query_params:
        # an RFC 3339 date-time, as the document says: seconds and an offset (or Z) required
        if raw is None or not _RFC3339.fullmatch(raw):
            raise ActionError("invalid_request", "since is an RFC 3339 time, e.g. 2025-01-31T00:00:00+08:00")
        try:
            since = dt.datetime.fromisoformat(raw.upper())
        except ValueError:
            raise ActionError("invalid_request", "since is an RFC 3339 time, e.g. 2025-01-31T00:00:00+08:00") from None
    return json_response(await service_actions.figures(hub, session.user, since))


OPENAPI_TYPES: list[Any] = [
    AvailabilityBody,
    HandoverBody,
    OpenSessionBody,
    TransferBody,
    CloseBody,
    CsatBody,
    AgentStateBody,
    AgentConfigBody,
    QueueBody,
    QueueList,
    TagList,
    RmList,
    RmListed,
    rm_actions.Book,
    rm_actions.RmStatusView,
    rm_actions.CardView,
    rm_actions.MyRm,
    rm_actions.Handover,
    service_actions.SessionView,
    service_actions.SessionDetail,
    service_actions.AgentView,
    service_actions.QueueWaiting,
    service_actions.QueueView,
    service_actions.Figures,
]


def openapi_paths(op: Any, ref: Any) -> dict[str, Any]:
    """The OpenAPI paths of this module (``op`` and ``ref`` are openapi.py's builders)."""
    session_id = {"name": "session_id", "in": "path", "required": True, "schema": {"type": "string", "format": "uuid"}}

    def with_id(o: dict[str, Any]) -> dict[str, Any]:
        return {**o, "parameters": [session_id]}

    book = op("An RM's workbench: customers with card, unread count and last message (?rm= for administrators)", 200, "Book", extra=(403, 404))
    book["description"] = "Paged: pass next_cursor (null on the last page) back unchanged as ?cursor= for the next page."
    book["parameters"] = [
        RM.openapi(),
        CURSOR_PARAM,
        PAGE_LIMIT.openapi(),
    ]
    directory = op("Relationship managers an administrator may hand books between, by username, with their number of customers", 200, "RmList", extra=(400, 403))
    directory["description"] = book["description"] + (
        " Head office sees every RM; a branch admin those of their own subtree. RMs an information barrier separates "
        "from the caller are omitted."
    )
    directory["parameters"] = [CURSOR_PARAM, PAGE_LIMIT.openapi()]
    queues = op("Service queues with business hours and whether they are open now, by code", 200, "QueueList")
    queues["description"] = book["description"]
    queues["parameters"] = [CURSOR_PARAM, PAGE_LIMIT.openapi()]
    open_op = op(
        "Talk to the service desk (customers): the bot answers first; 200 with the session already open",
        201,
        "SessionView",
        body=ref("OpenSessionBody"),
        extra=(403, 404),
    )
    open_op["requestBody"]["required"] = False  # no body: the general queue
    open_op["responses"]["200"] = {
        "description": "My service session was open already: it is returned unchanged",
        "content": {"application/json": {"schema": ref("SessionView")}},
    }
    figures_op = op("Supervisors: waiting now, longest wait, average wait and handle time, CSAT per queue and agent", 200, "Figures", extra=(400, 403))
    figures_op["parameters"] = [{"name": "since", "in": "query", "schema": {"type": "string", "format": "date-time"}}]
    return {
        "/v1/rm/book": {"get": book},
        "/v1/rm/managers": {"get": directory},
        "/v1/rm/availability": {
            "put": op("Declare my availability (RMs); away and off duty send one auto-reply per customer (422 sensitive_data: the auto-reply carries a card, resident ID or account number, a CVV or a code, refused as the RM's own message to a customer would be)", 200, "RmStatusView", body=ref("AvailabilityBody"), extra=(400, 403, 422))
        },
        "/v1/rm/{username}/handover": {
            "post": op(
                "Hand an RM's book (or named customers) to another RM in one audited transaction; the old RM loses access at once "
                "(403 also when an information barrier separates the new RM from one of the customers: nothing moves)",
                200,
                "Handover",
                body=ref("HandoverBody"),
                extra=(400, 403, 404),
            )
        },
        "/v1/customers/{username}/card": {"get": op("A customer's profile card (their RM, the agent serving them, administrators)", 200, "CardView", extra=(404,))},
        "/v1/me/rm": {"get": op("My relationship manager and their availability (customers)", 200, "MyRm", extra=(404,))},
        "/v1/service/queues": {"get": queues},
        "/v1/service/queues/{code}": {
            "put": op("Create or configure a queue (supervisors): name, business hours, out-of-hours reply (422 sensitive_data: the reply carries a card, resident ID or account number, a CVV or a code, refused as staff's message to a customer would be)", 200, "QueueView", body=ref("QueueBody"), extra=(400, 403, 422))
        },
        "/v1/service/tags": {"get": op("The tags a session is closed with", 200, "TagList")},
        "/v1/service/sessions": {"post": open_op},
        "/v1/service/sessions/current": {"get": op("My open service session, with queue position and estimated wait", 200, "SessionView", extra=(403, 404))},
        "/v1/service/sessions/{session_id}": {"get": with_id(op("A session with the CSAT comment; its agent and supervisors also see the customer card and notes", 200, "SessionDetail", extra=(404,)))},
        "/v1/service/sessions/{session_id}/human": {"post": with_id(op("Ask for a person: join the queue (or get the out-of-hours reply)", 200, "SessionView", extra=(403, 404)))},
        "/v1/service/sessions/{session_id}/cancel": {"post": with_id(op("Leave before being served", 200, "SessionView", extra=(403, 404, 409)))},
        "/v1/service/sessions/{session_id}/transfer": {
            "post": with_id(op("Transfer to a queue or an agent, with a note for agents only (410: the conversation was erased; 403: an agent an information barrier separates from the customer; the note's card, ID and account numbers, CVVs and codes are masked — 422 sensitive_data when BANKHUB_DLP_STAFF_TO_STAFF is refuse)", 200, "SessionView", body=ref("TransferBody"), extra=(400, 403, 404, 409, 410, 422)))
        },
        "/v1/service/sessions/{session_id}/close": {
            "post": with_id(op("Close with at least one tag; the customer is asked to rate (410: a note, and the conversation was erased; the note is masked like a transfer's, 422 sensitive_data when refused)", 200, "SessionView", body=ref("CloseBody"), extra=(400, 404, 409, 410, 422)))
        },
        "/v1/service/sessions/{session_id}/csat": {
            "post": with_id(op("Rate a closed session 1-5, once (its customer); 410: a comment, and the conversation was erased; the comment's card, ID and account numbers, CVVs and codes are masked (422 sensitive_data when BANKHUB_DLP_CUSTOMER_TO_STAFF is refuse)", 200, "SessionView", body=ref("CsatBody"), extra=(400, 404, 409, 410, 422)))
        },
        "/v1/service/agents/me": {"get": op("My desk state, capacity, load, sessions and my queues' waiting counts (agents)", 200, "AgentView", extra=(403, 404))},
        "/v1/service/agents/me/state": {"put": op("Set my state: available, busy, away (agents)", 200, "AgentView", body=ref("AgentStateBody"), extra=(400, 403, 404))},
        "/v1/service/agents/{username}": {
            "put": op("Put an agent on the desk: capacity and queues (supervisors)", 200, "AgentView", body=ref("AgentConfigBody"), extra=(400, 403, 404, 409))
        },
        "/v1/service/figures": {"get": figures_op},
    }
