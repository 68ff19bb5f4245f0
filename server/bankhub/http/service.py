"""HTTP handlers for relationship managers and the service desk (thin: decode, act, encode)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from ..actions import rm as rm_actions
from ..actions import service as service_actions
from ..actions.errors import ActionError
from .auth import require_session
from .problems import json_response
from .routes import Handler, _body, _client_ip, _hub

__all__ = ["ROUTES", "OPENAPI_TYPES", "openapi_paths"]


class AvailabilityBody(msgspec.Struct, forbid_unknown_fields=True):
    status: str  # online | away | off_duty
    message: str | None = None  # my auto-reply while away or off duty (default: a standard one)


class HandoverBody(msgspec.Struct, forbid_unknown_fields=True):
    to: str  # the RM taking over
    customers: list[str] | None = None  # usernames; omitted: the whole book


class OpenSessionBody(msgspec.Struct, forbid_unknown_fields=True):
    queue: str | None = None  # default: general


class TransferBody(msgspec.Struct, forbid_unknown_fields=True):
    note: str  # for the next agent only, never shown to the customer
    queue: str | None = None
    agent: str | None = None


class CloseBody(msgspec.Struct, forbid_unknown_fields=True):
    tags: list[str]
    note: str | None = None


class CsatBody(msgspec.Struct, forbid_unknown_fields=True):
    score: int
    comment: str | None = None


class AgentStateBody(msgspec.Struct, forbid_unknown_fields=True):
    state: str  # available | busy | away


class AgentConfigBody(msgspec.Struct, forbid_unknown_fields=True):
    capacity: int | None = None
    queues: list[str] | None = None


class QueueBody(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    timezone: str = "Asia/Shanghai"
    days: list[int] = msgspec.field(default_factory=lambda: [1, 2, 3, 4, 5, 6, 7])  # ISO weekdays
    open: str = "00:00"
    close: str = "24:00"
    out_of_hours_text: str = ""


class QueueList(msgspec.Struct):
    queues: list[service_actions.QueueView]


class TagList(msgspec.Struct):
    tags: dict[str, str]


# --- relationship managers -----------------------------------------------------------------


async def rm_book(request: Request) -> Response:
    hub = _hub(request)
    session = await require_session(hub, request)
    return json_response(await rm_actions.book(hub, session.user, request.query_params.get("rm") or None))


async def rm_availability(request: Request) -> Response:
    hub = _hub(request)
    session = await require_session(hub, request)
    body: AvailabilityBody = await _body(request, AvailabilityBody)
    return json_response(await rm_actions.set_status(hub, session.user, body.status, body.message))


async def customer_card(request: Request) -> Response:
    hub = _hub(request)
    session = await require_session(hub, request)
    return json_response(await rm_actions.card(hub, session.user, request.path_params["username"]))


async def my_rm(request: Request) -> Response:
    hub = _hub(request)
    session = await require_session(hub, request)
    return json_response(await rm_actions.my_rm(hub, session.user))


async def hand_over(request: Request) -> Response:
    hub = _hub(request)
    session = await require_session(hub, request)
    body: HandoverBody = await _body(request, HandoverBody)
    result = await rm_actions.hand_over_book(
        hub, session.user, request.path_params["username"], body.to, body.customers, ip=_client_ip(request)
    )
    return json_response(result)


# --- service desk --------------------------------------------------------------------------


async def list_queues(request: Request) -> Response:
    hub = _hub(request)
    session = await require_session(hub, request)
    return json_response(QueueList(queues=await service_actions.queues(hub, session.user)))


async def put_queue(request: Request) -> Response:
    hub = _hub(request)
    session = await require_session(hub, request)
    body: QueueBody = await _body(request, QueueBody)
    view = await service_actions.put_queue(
        hub,
        session.user,
        request.path_params["code"],
        name=body.name,
        timezone=body.timezone,
        days=body.days,
        open_at=body.open,
        close_at=body.close,
        out_of_hours_text=body.out_of_hours_text,
        ip=_client_ip(request),
    )
    return json_response(view)


async def list_tags(request: Request) -> Response:
    hub = _hub(request)
    session = await require_session(hub, request)
    return json_response(TagList(tags=await service_actions.tags(hub, session.user)))


async def open_session(request: Request) -> Response:
    hub = _hub(request)
    session = await require_session(hub, request)
    body = OpenSessionBody()
    if request.headers.get("content-length", "0") not in ("", "0") or request.headers.get("transfer-encoding"):
        body = await _body(request, OpenSessionBody)
    view, created = await service_actions.open_session(hub, session.user, body.queue)
    return json_response(view, 201 if created else 200)


async def current_session(request: Request) -> Response:
    hub = _hub(request)
    session = await require_session(hub, request)
    return json_response(await service_actions.current_session(hub, session.user))


async def get_session(request: Request) -> Response:
    hub = _hub(request)
    session = await require_session(hub, request)
    return json_response(await service_actions.session_detail(hub, session.user, request.path_params["session_id"]))


async def ask_for_person(request: Request) -> Response:
    hub = _hub(request)
    session = await require_session(hub, request)
    return json_response(await service_actions.ask_for_person(hub, session.user, request.path_params["session_id"]))


async def cancel_session(request: Request) -> Response:
    hub = _hub(request)
    session = await require_session(hub, request)
    return json_response(await service_actions.cancel(hub, session.user, request.path_params["session_id"]))


async def transfer_session(request: Request) -> Response:
    hub = _hub(request)
    session = await require_session(hub, request)
    body: TransferBody = await _body(request, TransferBody)
    view = await service_actions.transfer(
        hub, session.user, request.path_params["session_id"], queue=body.queue, agent=body.agent, note=body.note
    )
    return json_response(view)


async def close_session(request: Request) -> Response:
    hub = _hub(request)
    session = await require_session(hub, request)
    body: CloseBody = await _body(request, CloseBody)
    return json_response(await service_actions.close(hub, session.user, request.path_params["session_id"], body.tags, body.note))


async def rate_session(request: Request) -> Response:
    hub = _hub(request)
    session = await require_session(hub, request)
    body: CsatBody = await _body(request, CsatBody)
    return json_response(
        await service_actions.rate(hub, session.user, request.path_params["session_id"], body.score, body.comment)
    )


async def my_desk(request: Request) -> Response:
    hub = _hub(request)
    session = await require_session(hub, request)
    return json_response(await service_actions.my_desk(hub, session.user))


async def set_agent_state(request: Request) -> Response:
    hub = _hub(request)
    session = await require_session(hub, request)
    body: AgentStateBody = await _body(request, AgentStateBody)
    return json_response(await service_actions.set_agent_state(hub, session.user, body.state))


async def put_agent(request: Request) -> Response:
    hub = _hub(request)
    session = await require_session(hub, request)
    body: AgentConfigBody = await _body(request, AgentConfigBody)
    view = await service_actions.put_agent(
        hub, session.user, request.path_params["username"], capacity=body.capacity, queues=body.queues, ip=_client_ip(request)
    )
    return json_response(view)


async def figures(request: Request) -> Response:
    hub = _hub(request)
    session = await require_session(hub, request)
    since = None
    if raw := request.query_params.get("since"):
        try:
            since = dt.datetime.fromisoformat(raw)
        except ValueError:
            raise ActionError("invalid_request", "since is an ISO 8601 time, e.g. 2025-01-31T00:00:00+08:00") from None
        if since.tzinfo is None:
            raise ActionError("invalid_request", "since needs a UTC offset")
    return json_response(await service_actions.figures(hub, session.user, since))


ROUTES: list[tuple[str, Handler, list[str]]] = [
    ("/v1/rm/book", rm_book, ["GET"]),
    ("/v1/rm/availability", rm_availability, ["PUT"]),
    ("/v1/rm/{username}/handover", hand_over, ["POST"]),
    ("/v1/customers/{username}/card", customer_card, ["GET"]),
    ("/v1/me/rm", my_rm, ["GET"]),
    ("/v1/service/queues", list_queues, ["GET"]),
    ("/v1/service/queues/{code}", put_queue, ["PUT"]),
    ("/v1/service/tags", list_tags, ["GET"]),
    ("/v1/service/sessions", open_session, ["POST"]),
    ("/v1/service/sessions/current", current_session, ["GET"]),
    ("/v1/service/sessions/{session_id}", get_session, ["GET"]),
    ("/v1/service/sessions/{session_id}/human", ask_for_person, ["POST"]),
    ("/v1/service/sessions/{session_id}/cancel", cancel_session, ["POST"]),
    ("/v1/service/sessions/{session_id}/transfer", transfer_session, ["POST"]),
    ("/v1/service/sessions/{session_id}/close", close_session, ["POST"]),
    ("/v1/service/sessions/{session_id}/csat", rate_session, ["POST"]),
    ("/v1/service/agents/me", my_desk, ["GET"]),
    ("/v1/service/agents/me/state", set_agent_state, ["PUT"]),
    ("/v1/service/agents/{username}", put_agent, ["PUT"]),
    ("/v1/service/figures", figures, ["GET"]),
]

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
    rm_actions.Book,
    rm_actions.RmStatusView,
    rm_actions.CardView,
    rm_actions.MyRm,
    rm_actions.Handover,
    service_actions.SessionView,
    service_actions.SessionDetail,
    service_actions.AgentView,
    service_actions.QueueView,
    service_actions.Figures,
]


def openapi_paths(op: Any, ref: Any) -> dict[str, Any]:
    """The OpenAPI paths of this module (``op`` and ``ref`` are openapi.py's builders)."""
    session_id = {"name": "session_id", "in": "path", "required": True, "schema": {"type": "string", "format": "uuid"}}

    def with_id(o: dict[str, Any]) -> dict[str, Any]:
        return {**o, "parameters": [session_id]}

    book = op("An RM's workbench: customers with card, unread count and last message (?rm= for administrators)", 200, "Book", extra=(403, 404))
    book["parameters"] = [{"name": "rm", "in": "query", "schema": {"type": "string"}}]
    figures_op = op("Supervisors: waiting now, longest wait, average wait and handle time, CSAT per queue and agent", 200, "Figures", extra=(400, 403))
    figures_op["parameters"] = [{"name": "since", "in": "query", "schema": {"type": "string", "format": "date-time"}}]
    return {
        "/v1/rm/book": {"get": book},
        "/v1/rm/availability": {
            "put": op("Declare my availability (RMs); away and off duty send one auto-reply per customer", 200, "RmStatusView", body=ref("AvailabilityBody"), extra=(400, 403))
        },
        "/v1/rm/{username}/handover": {
            "post": op(
                "Hand an RM's book (or named customers) to another RM in one audited transaction; the old RM loses access at once",
                200,
                "Handover",
                body=ref("HandoverBody"),
                extra=(400, 403, 404),
            )
        },
        "/v1/customers/{username}/card": {"get": op("A customer's profile card (their RM, the agent serving them, administrators)", 200, "CardView", extra=(404,))},
        "/v1/me/rm": {"get": op("My relationship manager and their availability (customers)", 200, "MyRm", extra=(404,))},
        "/v1/service/queues": {"get": op("Service queues with business hours and whether they are open now", 200, "QueueList")},
        "/v1/service/queues/{code}": {
            "put": op("Create or configure a queue (supervisors): name, business hours, out-of-hours reply", 200, "QueueView", body=ref("QueueBody"), extra=(400, 403))
        },
        "/v1/service/tags": {"get": op("The tags a session is closed with", 200, "TagList")},
        "/v1/service/sessions": {
            "post": op("Talk to the service desk (customers): the bot answers first; 200 with the session already open", 201, "SessionView", body=ref("OpenSessionBody"), extra=(403, 404))
        },
        "/v1/service/sessions/current": {"get": op("My open service session, with queue position and estimated wait", 200, "SessionView", extra=(403, 404))},
        "/v1/service/sessions/{session_id}": {"get": with_id(op("A session; its agent and supervisors also see the customer card and notes", 200, "SessionDetail", extra=(404,)))},
        "/v1/service/sessions/{session_id}/human": {"post": with_id(op("Ask for a person: join the queue (or get the out-of-hours reply)", 200, "SessionView", extra=(403, 404)))},
        "/v1/service/sessions/{session_id}/cancel": {"post": with_id(op("Leave before being served", 200, "SessionView", extra=(403, 404, 409)))},
        "/v1/service/sessions/{session_id}/transfer": {
            "post": with_id(op("Transfer to a queue or an agent, with a note for agents only", 200, "SessionView", body=ref("TransferBody"), extra=(400, 404, 409)))
        },
        "/v1/service/sessions/{session_id}/close": {
            "post": with_id(op("Close with at least one tag; the customer is asked to rate", 200, "SessionView", body=ref("CloseBody"), extra=(400, 404, 409)))
        },
        "/v1/service/sessions/{session_id}/csat": {
            "post": with_id(op("Rate a closed session 1-5, once (its customer)", 200, "SessionView", body=ref("CsatBody"), extra=(400, 404, 409)))
        },
        "/v1/service/agents/me": {"get": op("My desk state, capacity, load and sessions (agents)", 200, "AgentView", extra=(403, 404))},
        "/v1/service/agents/me/state": {"put": op("Set my state: available, busy, away (agents)", 200, "AgentView", body=ref("AgentStateBody"), extra=(400, 403, 404))},
        "/v1/service/agents/{username}": {
            "put": op("Put an agent on the desk: capacity and queues (supervisors)", 200, "AgentView", body=ref("AgentConfigBody"), extra=(400, 403, 404, 409))
        },
        "/v1/service/figures": {"get": figures_op},
    }
