"""Relationship managers and the service desk: events, data types and HTTP methods.

Events (yielded by :meth:`bankhub_client.Client.events`):

* :class:`ServiceStatus` — (customers) my service session changed: ``state`` ``bot``,
  ``waiting`` (with ``position``, ``waiting`` and ``estimated_wait_s``), ``active`` (with
  the ``agent``) or ``closed`` (``csat_pending``: I may rate it). Statuses of one queue
  carry a growing ``revision``: ignore one lower than a status already shown;
* :class:`ServiceAssigned` — (agents) a customer was routed or transferred to me, with
  their :class:`CustomerCard` and the notes agents left;
* :class:`AgentState` — (agents) my desk state or load changed;
* :class:`RmChanged` — (customers) my relationship manager changed;
* :class:`ConversationAdded` / :class:`ConversationRemoved` — a conversation was handed
  to me, or taken away (a handover, a transferred or closed service session): nothing
  more of it reaches me.

They are server frames as they stand: :func:`bankhub_client.wire.decode_server_frame`
decodes them (and :func:`bankhub_client.wire.decode_desk_event` only them).

Messages in which the bank itself speaks — the bot, queue notices, handover notices, an
away RM's auto-reply — carry a :class:`SystemBody` (``event``, ``text``, ``data``).

:class:`DeskApi` holds the HTTP methods; it is mixed into :class:`bankhub_client.Api`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any, get_args
from urllib.parse import quote

import msgspec
from msgspec import Struct

from ._mixin import HttpMixin

__all__ = [
    "SystemBody",
    "StaffCard",
    "CustomerCard",
    "ServiceNote",
    "RmChanged",
    "ConversationAdded",
    "ConversationRemoved",
    "ServiceStatus",
    "ServiceAssigned",
    "AgentState",
    "DeskEvent",
    "DESK_EVENT_TYPES",
    "ServiceSession",
    "ServiceSessionDetail",
    "AgentDesk",
    "ServiceQueue",
    "QueueFigures",
    "AgentFigures",
    "DeskFigures",
    "RmAvailability",
    "BookMessage",
    "BookEntry",
    "Book",
    "CustomerCardView",
    "MyRm",
    "Handover",
    "DeskApi",
]


class SystemBody(Struct, frozen=True, tag="system", tag_field="kind"):
    """The bank speaking in a conversation (sent by the hub only). ``event`` is a stable
    code (``bot_answer``, ``queued``, ``agent_joined``, ``rm_changed``, ``rm_auto_reply``,
    ``out_of_hours``, ...; see the protocol document), ``text`` what to show."""

    event: str
    text: str
    data: dict[str, str] = {}


class StaffCard(Struct, frozen=True):
    user_id: str
    username: str
    display_name: str


class CustomerCard(Struct, frozen=True):
    """A customer's profile card: ``branch`` is their org's code, ``account_class``
    ``I``/``II``/``III``."""

    user_id: str
    username: str
    display_name: str
    branch: str
    org_name: str
    segment: str | None = None
    account_class: str | None = None
    tags: list[str] = []
    rm: StaffCard | None = None


class ServiceNote(Struct, frozen=True):
    """A note on a service session: for agents and supervisors only. ``unreadable``
    (``shredded``, ``undecryptable``): why ``text`` is empty."""

    author_id: str
    kind: str
    text: str
    ts: int
    to_queue: str | None = None
    to_agent_id: str | None = None
    unreadable: str | None = None


# --- events ------------------------------------------------------------------------------


class RmChanged(Struct, frozen=True, tag="rm_changed", tag_field="type"):
    rm: StaffCard
    conversation_id: str | None = None
    previous_rm_id: str | None = None


class ConversationAdded(Struct, frozen=True, tag="conversation_added", tag_field="type"):
    conversation_id: str
    kind: str
    reason: str


class ConversationRemoved(Struct, frozen=True, tag="conversation_removed", tag_field="type"):
    conversation_id: str
    reason: str


class ServiceStatus(Struct, frozen=True, tag="service_status", tag_field="type"):
    session_id: str
    conversation_id: str
    queue: str
    state: str
    revision: int = 0
    position: int | None = None
    waiting: int | None = None
    estimated_wait_s: int | None = None
    agent: StaffCard | None = None
    csat_pending: bool = False


class ServiceAssigned(Struct, frozen=True, tag="service_assigned", tag_field="type"):
    session_id: str
    conversation_id: str
    queue: str
    via: str
    start_seq: int
    customer: CustomerCard
    notes: list[ServiceNote]


class AgentState(Struct, frozen=True, tag="agent_state", tag_field="type"):
    state: str
    capacity: int
    active: int


DeskEvent = RmChanged | ConversationAdded | ConversationRemoved | ServiceStatus | ServiceAssigned | AgentState
"""The desk events; they are server frames too (decoded by :mod:`bankhub_client.wire`)."""
DESK_EVENT_TYPES = frozenset(cls.__struct_config__.tag for cls in get_args(DeskEvent))


# --- HTTP data ---------------------------------------------------------------------------


class ServiceSession(Struct, frozen=True):
    """A service session. While ``waiting``: ``position`` (1 = next), ``waiting`` in all,
    ``estimated_wait_s`` (None: no estimate). ``csat_pending``: closed, and I may rate it."""

    session_id: str
    conversation_id: str
    queue: str
    state: str
    opened_at: int
    revision: int = 0
    position: int | None = None
    waiting: int | None = None
    estimated_wait_s: int | None = None
    agent: StaffCard | None = None
    closed_at: int | None = None
    tags: list[str] = []
    csat: int | None = None
    csat_pending: bool = False


class ServiceSessionDetail(Struct, frozen=True):
    """A session; for its agent and supervisors also the customer's card and the notes.
    ``csat_comment_unreadable`` (``shredded``, ``undecryptable``): why the comment is missing."""

    session: ServiceSession
    customer: CustomerCard | None = None
    notes: list[ServiceNote] = []
    csat_comment: str | None = None
    csat_comment_unreadable: str | None = None


class AgentDesk(Struct, frozen=True):
    user_id: str
    username: str
    display_name: str
    state: str
    capacity: int
    active: int
    queues: list[str]
    sessions: list[ServiceSession] = []


class ServiceQueue(Struct, frozen=True):
    code: str
    name: str
    hours: str
    timezone: str
    days: list[int]
    open: str
    close: str
    open_now: bool
    next_open: str | None = None
    out_of_hours_text: str = ""


class QueueFigures(Struct, frozen=True):
    queue: str
    name: str
    waiting: int
    longest_wait_s: float | None
    avg_wait_s: float | None
    avg_handle_s: float | None
    handled: int
    csat_avg: float | None
    csat_count: int


class AgentFigures(Struct, frozen=True):
    user_id: str
    username: str
    display_name: str
    state: str
    capacity: int
    active: int
    queues: list[str]
    handled: int
    avg_handle_s: float | None
    csat_avg: float | None
    csat_count: int


class DeskFigures(Struct, frozen=True):
    since: dt.datetime
    queues: list[QueueFigures]
    agents: list[AgentFigures]


class RmAvailability(Struct, frozen=True):
    status: str
    message: str | None = None
    since: int | None = None


class BookMessage(Struct, frozen=True):
    """The last message of a conversation on the workbench; ``body`` is its JSON object."""

    conversation_id: str
    message_id: str
    seq: int
    sender_id: str
    body: dict[str, Any]
    ts: int

    @property
    def text(self) -> str | None:
        value = self.body.get("text")
        return value if isinstance(value, str) else None


class BookEntry(Struct, frozen=True):
    customer: CustomerCard
    conversation_id: str | None = None
    unread: int = 0
    last_message_ts: int | None = None
    last_message: BookMessage | None = None


class Book(Struct, frozen=True):
    rm: StaffCard
    availability: RmAvailability
    customers: list[BookEntry]
    next_cursor: str | None = None  # always None here: book() reads every page


class CustomerCardView(Struct, frozen=True):
    customer: CustomerCard
    conversation_id: str | None = None
    unread: int | None = None


class MyRm(Struct, frozen=True):
    rm: StaffCard
    availability: RmAvailability
    conversation_id: str | None = None


class Handover(Struct, frozen=True):
    from_rm: str
    to_rm: str
    customers: list[str]
    conversations: list[str]


class _Queues(Struct):
    queues: list[ServiceQueue]
    next_cursor: str | None = None


class _Tags(Struct):
    tags: dict[str, str]


def _q(value: str) -> str:
    return quote(value, safe="")


PAGE_SIZE = 200  # the hub's largest page


class DeskApi(HttpMixin):
    """RM and service-desk endpoints; mixed into :class:`~bankhub_client.Api`."""

    async def _get(self, path: str, type_: type[Any], params: Mapping[str, str | int] | None = None) -> Any:
        return self._decode(await self._request("GET", path, params=params), type_)

    async def _get_all(self, path: str, type_: type[Any], field: str, params: Mapping[str, str | int] | None = None) -> Any:
        """A paged list, every page: the first page with ``field`` holding the items of all of
        them (the hub pages every list; ``next_cursor`` is passed back until it is null)."""
        query: dict[str, str | int] = {**(params or {}), "limit": PAGE_SIZE}
        first = page = await self._get(path, type_, query)
        items = list(getattr(page, field))
        while page.next_cursor is not None:
            page = await self._get(path, type_, {**query, "cursor": page.next_cursor})
            items += getattr(page, field)
        return msgspec.structs.replace(first, **{field: items, "next_cursor": None})

    async def _send(self, method: str, path: str, type_: type[Any], json: Any = None) -> Any:
        return self._decode(await self._request(method, path, json=json), type_)

    # --- customers ---------------------------------------------------------------------

    async def open_service(self, queue: str | None = None) -> ServiceSession:
        """``POST /v1/service/sessions``: talk to the service desk (the bot greets first) in
        ``queue`` (default ``general``); my open session if I have one. Then write into its
        ``conversation_id``; "人工" or "agent" asks for a person."""
        session: ServiceSession = await self._send("POST", "/v1/service/sessions", ServiceSession, {"queue": queue} if queue else {})
        return session

    async def service_session(self) -> ServiceSession:
        """``GET /v1/service/sessions/current``: my open session, with my place in the queue (404: none)."""
        session: ServiceSession = await self._get("/v1/service/sessions/current", ServiceSession)
        return session

    async def ask_for_agent(self, session_id: str) -> ServiceSession:
        """``POST /v1/service/sessions/{id}/human``: join the queue now (outside business hours
        the session stays with the bot and the out-of-hours reply arrives as a message)."""
        session: ServiceSession = await self._send("POST", f"/v1/service/sessions/{_q(session_id)}/human", ServiceSession)
        return session

    async def leave_queue(self, session_id: str) -> ServiceSession:
        """``POST /v1/service/sessions/{id}/cancel``: leave before being served."""
        session: ServiceSession = await self._send("POST", f"/v1/service/sessions/{_q(session_id)}/cancel", ServiceSession)
        return session

    async def rate_service(self, session_id: str, score: int, comment: str | None = None) -> ServiceSession:
        """``POST /v1/service/sessions/{id}/csat``: rate a closed session 1-5, once (409 after)."""
        if not 1 <= score <= 5:
            raise ValueError("score is 1 to 5")
        body: dict[str, Any] = {"score": score}
        if comment:
            body["comment"] = comment
        session: ServiceSession = await self._send("POST", f"/v1/service/sessions/{_q(session_id)}/csat", ServiceSession, body)
        return session

    async def my_rm(self) -> MyRm:
        """``GET /v1/me/rm``: my relationship manager and their availability."""
        mine: MyRm = await self._get("/v1/me/rm", MyRm)
        return mine

    # --- agents ------------------------------------------------------------------------

    async def desk(self) -> AgentDesk:
        """``GET /v1/service/agents/me``: my state, capacity, load and sessions."""
        mine: AgentDesk = await self._get("/v1/service/agents/me", AgentDesk)
        return mine

    async def set_agent_state(self, state: str) -> AgentDesk:
        """``PUT /v1/service/agents/me/state``: ``available`` (takes customers), ``busy``
        (keeps mine, takes no new ones) or ``away``."""
        mine: AgentDesk = await self._send("PUT", "/v1/service/agents/me/state", AgentDesk, {"state": state})
        return mine

    async def service_session_detail(self, session_id: str) -> ServiceSessionDetail:
        """``GET /v1/service/sessions/{id}``."""
        detail: ServiceSessionDetail = await self._get(f"/v1/service/sessions/{_q(session_id)}", ServiceSessionDetail)
        return detail

    async def transfer_session(
        self, session_id: str, *, note: str, queue: str | None = None, agent: str | None = None
    ) -> ServiceSession:
        """``POST /v1/service/sessions/{id}/transfer``: to a ``queue`` (it waits there ahead
        of new arrivals) or an available ``agent`` (a username). ``note`` is required and
        only agents see it."""
        if (queue is None) == (agent is None):
            raise ValueError("transfer to either a queue or an agent")
        body: dict[str, Any] = {"note": note, "queue": queue} if queue else {"note": note, "agent": agent}
        session: ServiceSession = await self._send("POST", f"/v1/service/sessions/{_q(session_id)}/transfer", ServiceSession, body)
        return session

    async def close_session(self, session_id: str, tags: Sequence[str], note: str | None = None) -> ServiceSession:
        """``POST /v1/service/sessions/{id}/close``: with 1-5 tags from :meth:`service_tags`."""
        body: dict[str, Any] = {"tags": list(tags)}
        if note:
            body["note"] = note
        session: ServiceSession = await self._send("POST", f"/v1/service/sessions/{_q(session_id)}/close", ServiceSession, body)
        return session

    async def service_tags(self) -> dict[str, str]:
        """``GET /v1/service/tags``: tag -> label."""
        tags: _Tags = await self._get("/v1/service/tags", _Tags)
        return tags.tags

    async def service_queues(self) -> list[ServiceQueue]:
        """``GET /v1/service/queues``: the queues, their hours, open now or not."""
        queues: _Queues = await self._get_all("/v1/service/queues", _Queues, "queues")
        return queues.queues

    async def customer_card(self, username: str) -> CustomerCardView:
        """``GET /v1/customers/{username}/card``: their RM, the agent serving them, administrators."""
        card: CustomerCardView = await self._get(f"/v1/customers/{_q(username)}/card", CustomerCardView)
        return card

    # --- relationship managers -----------------------------------------------------------

    async def book(self, rm: str | None = None) -> Book:
        """``GET /v1/rm/book``: my workbench (administrators name the ``rm``)."""
        book: Book = await self._get_all("/v1/rm/book", Book, "customers", {"rm": rm} if rm else None)
        return book

    async def set_availability(self, status: str, message: str | None = None) -> RmAvailability:
        """``PUT /v1/rm/availability``: ``online``, ``away`` or ``off_duty``; while away or
        off duty each customer who writes gets one auto-reply (``message`` or a default)."""
        body: dict[str, Any] = {"status": status}
        if message:
            body["message"] = message
        availability: RmAvailability = await self._send("PUT", "/v1/rm/availability", RmAvailability, body)
        return availability

    # --- administrators and supervisors ---------------------------------------------------

    async def hand_over_book(self, from_rm: str, to_rm: str, customers: Sequence[str] | None = None) -> Handover:
        """``POST /v1/rm/{from_rm}/handover``: the whole book, or the named customers, to
        ``to_rm`` in one audited transaction."""
        body: dict[str, Any] = {"to": to_rm}
        if customers is not None:
            body["customers"] = list(customers)
        handover: Handover = await self._send("POST", f"/v1/rm/{_q(from_rm)}/handover", Handover, body)
        return handover

    async def configure_queue(
        self,
        code: str,
        name: str,
        *,
        timezone: str = "Asia/Shanghai",
        days: Sequence[int] = (1, 2, 3, 4, 5, 6, 7),
        open: str = "00:00",
        close: str = "24:00",
        out_of_hours_text: str = "",
    ) -> ServiceQueue:
        """``PUT /v1/service/queues/{code}``: create or configure a queue (supervisors)."""
        body = {
            "name": name,
            "timezone": timezone,
            "days": list(days),
            "open": open,
            "close": close,
            "out_of_hours_text": out_of_hours_text,
        }
        queue: ServiceQueue = await self._send("PUT", f"/v1/service/queues/{_q(code)}", ServiceQueue, body)
        return queue

    async def configure_agent(self, username: str, *, capacity: int | None = None, queues: Sequence[str] | None = None) -> AgentDesk:
        """``PUT /v1/service/agents/{username}``: put an agent on the desk (supervisors)."""
        body: dict[str, Any] = {}
        if capacity is not None:
            body["capacity"] = capacity
        if queues is not None:
            body["queues"] = list(queues)
        agent: AgentDesk = await self._send("PUT", f"/v1/service/agents/{_q(username)}", AgentDesk, body)
        return agent

    async def desk_figures(self, since: dt.datetime | None = None) -> DeskFigures:
        """``GET /v1/service/figures``: waiting now, longest wait, average wait and handle
        time, CSAT per queue and agent (since ``since``, default the last 24 hours)."""
        params: dict[str, str | int] | None = None
        if since is not None:
            if since.tzinfo is None:
                raise ValueError("since must be timezone-aware")
            params = {"since": since.isoformat()}
        figures: DeskFigures = await self._get("/v1/service/figures", DeskFigures, params)
        return figures
