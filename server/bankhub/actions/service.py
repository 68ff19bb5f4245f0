"""The customer service desk: the bot first, then a queue, then an agent; transfer, close, rate.

A customer's session moves ``bot`` → ``waiting`` → ``active`` → ``closed``:

* **bot** — opening a session (or writing into the service conversation with none open)
  starts it. Every customer message gets the bot's answer from the FAQ
  (:mod:`bankhub.desk.faq`); asking for a person ("人工", "agent"), or a question the bot
  cannot answer, hands over: outside the queue's business hours the customer gets the
  out-of-hours reply instead (and may keep asking the bot);
* **waiting** — the session holds the next ticket of its queue; routing
  (:mod:`bankhub.storage.service`) gives it to the least-loaded available agent with free
  capacity as soon as there is one. Until then every change of the queue pushes each
  waiting customer a ``service_status`` with their position and estimated wait;
* **active** — the agent is a member of the conversation; they transfer it (to a queue
  or an agent, with a note only agents see) or close it with tags;
* **closed** — the customer may rate it (CSAT 1-5) once.

Every step that concerns the customer is also a ``system`` message in the conversation,
so it is in their history on every device.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

import msgspec

from .. import policy
from ..desk import faq
from ..desk.hours import BusinessHours, format_hhmm, parse_hhmm
from ..desk.routing import AGENT_STATES, estimate_wait
from ..desk.system import SystemEvent
from ..hub import Hub
from ..models import AgentFigures, DeskAgent, QueueFigures, Role, User
from ..protocol.frames import CustomerCard, Message, ServiceNote, ServiceStatus, StaffCard, TextBody
from ..storage.service.rows import AgentRow, QueueRow, ServiceError, SessionRow
from ..text import is_queue_code
from .audit import record
from . import dlp, routing, system_posts
from .errors import ActionError, require

__all__ = [
    "DEFAULT_QUEUE",
    "SERVICE_AGENT_CONFIGURED",
    "SERVICE_QUEUE_CONFIGURED",
    "SessionView",
    "SessionDetail",
    "AgentView",
    "QueueWaiting",
    "QueueView",
    "Figures",
    "open_session",
    "current_session",
    "ask_for_person",
    "cancel",
    "session_detail",
    "my_desk",
    "set_agent_state",
    "transfer",
    "close",
    "rate",
    "figures",
    "queues",
    "put_queue",
    "put_agent",
    "tags",
    "on_customer_message",
]

DEFAULT_QUEUE = "general"
SERVICE_AGENT_CONFIGURED = "service.agent_configured"
SERVICE_QUEUE_CONFIGURED = "service.queue_configured"
MAX_TAGS = 5
MAX_NOTE = 2000
T = TypeVar("T")
_HINT = 'Type "人工" or "agent" at any time to talk to a person.'


class SessionView(msgspec.Struct, omit_defaults=True):
    """A service session as its customer (and staff) see it."""

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


class SessionDetail(msgspec.Struct, omit_defaults=True):
    """A session for the agent serving it and supervisors: the customer's card and the notes.

    ``csat_comment`` is the customer's comment with their rating (shown to them and to
    supervisors). When it cannot be shown, ``csat_comment_unreadable`` says why:
    ``shredded`` (the conversation was erased) or ``undecryptable``.
    """

    session: SessionView
    customer: CustomerCard | None = None
    notes: list[ServiceNote] = []
    csat_comment: str | None = None
    csat_comment_unreadable: str | None = None


class QueueWaiting(msgspec.Struct):
    """One of my queues as an agent sees it: customers waiting now and the longest wait."""

    queue: str
    waiting: int
    longest_wait_s: float | None


class AgentView(DeskAgent):
    sessions: list[SessionView] = []
    # GET /v1/service/agents/me only (null elsewhere): each of my queues, waiting now
    queue_waiting: list[QueueWaiting] | None = None


class QueueView(msgspec.Struct):
    code: str
    name: str
    hours: str
    timezone: str
    days: list[int]
    open: str
    close: str
    open_now: bool
    next_open: str | None
    out_of_hours_text: str


class Figures(msgspec.Struct):
    since: dt.datetime
    queues: list[QueueFigures]
    agents: list[AgentFigures]


def _ms(ts: dt.datetime | None) -> int | None:
    return None if ts is None else int(ts.timestamp() * 1000)


async def _store(hub: Hub, op: Callable[[], Awaitable[T]]) -> T:
    """Run a desk transaction (again, if Postgres chose it as a deadlock victim); its
    refusals become :class:`ActionError`."""
    try:
        return await routing.retrying(op)
    except ServiceError as exc:
        raise ActionError(exc.code, exc.message) from None


async def _view(hub: Hub, s: SessionRow, *, agent: User | None = None) -> SessionView:
    view = SessionView(
        session_id=s.id,
        conversation_id=s.conversation_id,
        queue=s.queue,
        state=s.state,
        opened_at=int(s.opened_at.timestamp() * 1000),
        closed_at=_ms(s.closed_at),
        tags=s.tags,
        csat=s.csat,
        csat_pending=s.state == "closed" and s.csat is None and s.agent_id is not None and s.closed_by != s.customer_id,
    )
    if s.state == "waiting":
        found = await hub.desk.store.waiting_position(s)
        if found is not None:
            position, total, est = found
            view.revision, view.position, view.waiting = est.revision, position, total
            view.estimated_wait_s = estimate_wait(position, est.slots, est.avg_handle_seconds)
    if s.state == "active" and s.agent_id is not None:
        if agent is None or agent.id != s.agent_id:
            agent = (await hub.users.by_ids([s.agent_id])).get(s.agent_id)
        if agent is not None:
            view.agent = routing.staff_card(agent)
    return view


def _queue_view(q: QueueRow, now: dt.datetime) -> QueueView:
    hours = q.hours
    opens = hours.next_open(now)
    return QueueView(
        code=q.code,
        name=q.name,
        hours=hours.describe(),
        timezone=q.timezone,
        days=q.days,
        open=format_hhmm(q.open_minute),
        close=format_hhmm(q.close_minute),
        open_now=hours.is_open(now),
        next_open=None if opens is None else opens.isoformat(timespec="minutes"),
        out_of_hours_text=q.out_of_hours_text,
    )


async def _session_for(hub: Hub, session_id: str) -> SessionRow:
    session = await hub.desk.store.session(session_id)
    if session is None:
        raise ActionError("not_found", "no such service session")
    return session


# --- customers ---------------------------------------------------------------------------


async def open_session(hub: Hub, actor: User, queue: str | None) -> tuple[SessionView, bool]:
    """Start talking to the service desk (the bot greets), or return the session already open."""
    require(policy.may_use_service(actor))
    code = queue or DEFAULT_QUEUE
    session, created = await _store(hub, lambda: hub.desk.store.open_session(actor.id, code))
    if created:
        q = await hub.desk.store.queue(session.queue)
        name = q.name if q else session.queue
        await system_posts.post(
            hub,
            session.conversation_id,
            SystemEvent.BOT_GREETING,
            f"Hello {actor.display_name}, I am the bank's assistant for {name}. Ask me a question. {_HINT}",
            {"session": session.id, "queue": session.queue},
            key=f"greet:{session.id}",
        )
    return await _view(hub, session), created


async def current_session(hub: Hub, actor: User) -> SessionView:
    """My open session (with my queue position while I wait)."""
    require(policy.may_use_service(actor))
    session = await hub.desk.store.open_session_of(actor.id)
    if session is None:
        raise ActionError("not_found", "no open service session")
    return await _view(hub, session)


async def ask_for_person(hub: Hub, actor: User, session_id: str) -> SessionView:
    """The customer asks for a person (a button, or "人工" typed into the chat)."""
    require(policy.may_use_service(actor))
    session = await _session_for(hub, session_id)
    require(policy.may_view_service_session(actor, session.customer_id, session.agent_id))
    return await _view(hub, await _hand_over_to_person(hub, session))


async def _hand_over_to_person(hub: Hub, session: SessionRow) -> SessionRow:
    if session.state != "bot":
        return session
    queue = await hub.desk.store.queue(session.queue)
    if queue is None:
        raise ActionError("not_found", f"no service queue {session.queue!r}")
    now = hub.desk.clock()
    hours = queue.hours
    if not hours.is_open(now):
        opens = hours.next_open(now)
        text = queue.out_of_hours_text or (
            f"Our {queue.name} team is available {hours.describe()}"
            + (f"; we open again {opens.strftime('%a %H:%M')}." if opens else ".")
            + " I can still answer common questions here at any time."
        )
        await system_posts.post(
            hub,
            session.conversation_id,
            SystemEvent.OUT_OF_HOURS,
            text,
            {"queue": queue.code, "next_open": opens.isoformat(timespec="minutes") if opens else ""},
        )
        return session
    after, outcome = await _store(hub, lambda: hub.desk.store.enqueue(session.id))
    if after.state == "waiting":
        found = await hub.desk.store.waiting_position(after)
        position, total, est = found if found else (0, 0, None)
        eta = estimate_wait(position, est.slots, est.avg_handle_seconds) if est else None
        await system_posts.post(
            hub,
            session.conversation_id,
            SystemEvent.QUEUED,
            f"Connecting you to {queue.name}: you are number {position} in line, and {_wait_text(eta)}. "
            "You will see your place move up here.",
            {"queue": queue.code, "position": str(position), "estimated_wait_s": "" if eta is None else str(eta)},
            key=f"queued:{after.id}:{after.ticket}",
        )
    await routing.publish_route(hub, outcome)
    return after


def _wait_text(seconds: int | None) -> str:
    if seconds is None:
        return "we cannot estimate the wait yet"
    minutes = max(1, round(seconds / 60))
    return f"the estimated wait is about {minutes} minute{'s' if minutes != 1 else ''}"


async def cancel(hub: Hub, actor: User, session_id: str) -> SessionView:
    """The customer leaves before being served; those behind them move up."""
    require(policy.may_use_service(actor))
    session = await _session_for(hub, session_id)
    require(policy.may_view_service_session(actor, session.customer_id, None))
    change = await _store(hub, lambda: hub.desk.store.cancel(session_id, actor.id))
    await system_posts.post(hub, session.conversation_id, SystemEvent.CANCELLED, "You left the queue. Write again whenever you need us.")
    await routing.publish_route(hub, change.routed)
    return await _view(hub, change.session)


async def rate(hub: Hub, actor: User, session_id: str, score: int, comment: str | None) -> SessionView:
    """The customer's satisfaction rating (1-5) after an agent closed the session; once."""
    session = await _session_for(hub, session_id)
    require(policy.may_rate_service_session(actor, session.customer_id))
    if not 1 <= score <= 5:
        raise ActionError("invalid_request", "a rating is 1 to 5")
    if comment is not None and len(comment) > 1000:
        raise ActionError("invalid_request", "a comment has at most 1000 characters")
    if comment:  # data-loss prevention: read by the service desk (customer to staff)
        comment = dlp.screen_csat_comment(hub.settings, actor, comment)
    rated = await _store(hub, lambda: hub.desk.store.rate(session_id, actor.id, score, comment or None))
    return await _view(hub, rated)


async def on_customer_message(hub: Hub, customer: User, message: Message) -> None:
    """A customer wrote into their service conversation: the bot answers while the session
    is with the bot; with no session open, this message starts a new one."""
    found = await hub.desk.store.session_in(message.conversation_id)
    if found is None:
        return
    owner, current = found
    if owner != customer.id:
        return
    if current is not None:
        await _bot_turn(hub, current, message)
        return
    # no session open: this message starts one (from the seq before it, so the agent who
    # takes it over sees it unread)
    queue = await _default_queue(hub)
    opened, _ = await _store(hub, lambda: hub.desk.store.open_session(customer.id, queue, message.seq - 1))
    await _bot_turn(hub, opened, message)


async def _bot_turn(hub: Hub, session: SessionRow, message: Message) -> None:
    if session.state != "bot":
        return  # waiting: their words wait for the agent; active: the agent reads them
    text = message.body.text if isinstance(message.body, TextBody) else ""
    decision = faq.answer(text, hub.desk.faq)
    if decision.kind == "answer" and decision.entry is not None:
        await system_posts.post(
            hub,
            session.conversation_id,
            SystemEvent.BOT_ANSWER,
            f"{decision.entry.text}\n\n{_HINT}",
            {"faq": decision.entry.id, "session": session.id},
            key=f"bot:{message.message_id}",
        )
        return
    if decision.kind == "unknown":
        await system_posts.post(
            hub,
            session.conversation_id,
            SystemEvent.BOT_UNKNOWN,
            "I cannot answer that myself; let me find you a person.",
            {"session": session.id},
            key=f"bot:{message.message_id}",
        )
    await _hand_over_to_person(hub, session)


async def _default_queue(hub: Hub) -> str:
    if await hub.desk.store.queue(DEFAULT_QUEUE) is not None:
        return DEFAULT_QUEUE
    queues = await hub.desk.store.queues()
    if not queues:
        raise ActionError("not_found", "the service desk has no queues")
    return queues[0].code


# --- agents ------------------------------------------------------------------------------


def _agent_view(a: AgentRow, sessions: Sequence[SessionView] = ()) -> AgentView:
    return AgentView(
        user_id=a.user_id,
        username=a.username,
        display_name=a.display_name,
        state=a.state,
        capacity=a.capacity,
        active=a.active,
        queues=a.queues,
        sessions=list(sessions),
    )


async def my_desk(hub: Hub, actor: User) -> AgentView:
    """My state, capacity and load, the sessions I serve now, and my queues' waiting counts."""
    agent = await hub.desk.store.agent(actor.id)
    require(policy.may_set_agent_state(actor, agent is not None))
    assert agent is not None
    sessions = [await _view(hub, s, agent=actor) for s in await hub.desk.store.active_sessions_of(actor.id)]
    view = _agent_view(agent, sessions)
    counts = await hub.desk.store.waiting_in(agent.queues)
    view.queue_waiting = [
        QueueWaiting(queue=q, waiting=counts.get(q, (0, 0.0))[0], longest_wait_s=counts[q][1] if q in counts else None) for q in agent.queues
    ]
    return view


async def set_agent_state(hub: Hub, actor: User, state: str) -> AgentView:
    """``available`` (takes customers), ``busy`` (keeps mine, takes no new ones) or ``away``."""
    agent = await hub.desk.store.agent(actor.id)
    require(policy.may_set_agent_state(actor, agent is not None))
    if state not in AGENT_STATES:
        raise ActionError("invalid_request", f"state is one of {', '.join(AGENT_STATES)}")
    updated = await hub.desk.store.set_agent_state(actor.id, state)
    if updated is None:
        raise ActionError("not_found", "you are not on the service desk")
    await routing.publish(hub, await routing.agent_state(hub, actor.id))
    if state == "available":
        await routing.route_for_agent(hub, actor.id)
        updated = await hub.desk.store.agent(actor.id) or updated
    return _agent_view(updated)


async def session_detail(hub: Hub, actor: User, session_id: str) -> SessionDetail:
    """A session: its customer sees the session; its agent and supervisors also the card and notes."""
    session = await _session_for(hub, session_id)
    require(policy.may_view_service_session(actor, session.customer_id, session.agent_id if session.state == "active" else None))
    view = await _view(hub, session)
    detail = SessionDetail(session=view)
    if session.csat is not None:
        comment = await hub.desk.store.csat_comment(session.id)
        detail.csat_comment, detail.csat_comment_unreadable = comment.text, comment.unreadable
    if actor.id != session.customer_id:
        detail.customer = await hub.desk.rm.card(session.customer_id)
        detail.notes = await hub.desk.store.notes(session.id)
    return detail


def _note(note: str) -> str:
    note = note.strip()
    if not 1 <= len(note) <= MAX_NOTE:
        raise ActionError("invalid_request", f"a transfer needs a note of 1 to {MAX_NOTE} characters for the next agent")
    return note


async def transfer(
    hub: Hub, actor: User, session_id: str, *, queue: str | None, agent: str | None, note: str
) -> SessionView:
    """Pass a session on: to a queue (it waits there ahead of new arrivals) or straight to an
    available agent. The note is for agents only; the customer is told who takes over."""
    session = await _session_for(hub, session_id)
    require(policy.may_handle_service_session(actor, session.agent_id if session.state == "active" else None))
    if (queue is None) == (agent is None):
        raise ActionError("invalid_request", "transfer to either a queue or an agent")
    text = dlp.screen_note(hub.settings, actor, _note(note))  # data-loss prevention: masked (or refused) before it is kept
    if session.state != "active" or session.agent_id is None:
        raise ActionError("conflict", f"the session is {session.state}, not being served")
    previous = session.agent_id
    if queue is not None:
        target = await hub.desk.store.queue(queue)
        if target is None:
            raise ActionError("not_found", f"no service queue {queue!r}")
        to_queue = queue
        change = await _store(hub, lambda: hub.desk.store.transfer_to_queue(session_id, actor.id, to_queue, text, previous))
        await system_posts.post(
            hub,
            session.conversation_id,
            SystemEvent.TRANSFERRED,
            f"You are being transferred to {target.name}; an agent there will continue from here.",
            {"queue": queue},
        )
        await routing.publish_route(hub, change.routed)
        await routing.released(hub, previous, session.conversation_id, "transferred")
    else:
        assert agent is not None
        target_user = await hub.users.by_username(agent)
        require(policy.may_transfer_to_agent(actor, previous, target_user))  # the target is a principal too
        assert target_user is not None
        # information barriers: checked in the transfer's own transaction (storage/service/routing.py)
        target_id = target_user.id
        change = await _store(hub, lambda: hub.desk.store.transfer_to_agent(session_id, actor.id, target_id, text, previous))
        items = await routing.assigned(hub, change.session, "transfer")
        await routing.publish(hub, items)
        await routing.released(hub, previous, session.conversation_id, "transferred")
    return await _view(hub, change.session)


async def close(hub: Hub, actor: User, session_id: str, tags: Sequence[str], note: str | None) -> SessionView:
    """Close a served session with at least one tag; the customer is asked for a rating."""
    session = await _session_for(hub, session_id)
    require(policy.may_handle_service_session(actor, session.agent_id if session.state == "active" else None))
    chosen = sorted(set(tags))
    if not 1 <= len(chosen) <= MAX_TAGS:
        raise ActionError("invalid_request", f"close with 1 to {MAX_TAGS} tags (GET /v1/service/tags lists them)")
    known = await hub.desk.store.tags()
    if unknown := [t for t in chosen if t not in known]:
        raise ActionError("invalid_request", f"unknown tags: {', '.join(unknown)} (GET /v1/service/tags lists them)")
    if note is not None and len(note) > MAX_NOTE:
        raise ActionError("invalid_request", f"a note has at most {MAX_NOTE} characters")
    if session.state != "active" or session.agent_id is None:
        raise ActionError("conflict", f"the session is {session.state}, not being served")
    previous = session.agent_id
    text = (note or "").strip() or None
    if text is not None:
        text = dlp.screen_note(hub.settings, actor, text)  # data-loss prevention: masked (or refused) before it is kept
    change = await _store(hub, lambda: hub.desk.store.close(session_id, actor.id, chosen, text, previous))
    closed = change.session
    await system_posts.post(
        hub,
        session.conversation_id,
        SystemEvent.CLOSED,
        "This conversation is closed. How did we do? Rate us from 1 (poor) to 5 (excellent).",
        {"session": session.id, "csat": "requested"},
        key=f"closed:{session.id}",
    )
    await routing.publish(
        hub,
        [
            routing.push(
                session.customer_id,
                ServiceStatus(
                    session_id=session.id,
                    conversation_id=session.conversation_id,
                    queue=closed.queue,
                    state="closed",
                    csat_pending=True,
                ),
            )
        ]
    )
    await routing.released(hub, previous, session.conversation_id, "closed")
    return await _view(hub, closed)


# --- supervisors -------------------------------------------------------------------------


async def figures(hub: Hub, actor: User, since: dt.datetime | None) -> Figures:
    """Waiting now, longest wait, average wait and handle time, CSAT — per queue and agent."""
    require(policy.may_supervise_desk(actor))
    start = since or (dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=24))
    queues_, agents = await hub.desk.store.figures(start)
    return Figures(since=start, queues=queues_, agents=agents)


async def queues(hub: Hub, actor: User, *, after: str | None = None, limit: int | None = None) -> list[QueueView]:
    """The desk's queues by code with their hours and whether they are open now (anyone
    signed in): all, or up to ``limit`` with a code after ``after``."""
    require(policy.may_read_conversation_list(actor))
    now = hub.desk.clock()
    return [_queue_view(q, now) for q in await hub.desk.store.queues(after=after, limit=limit)]


async def tags(hub: Hub, actor: User) -> dict[str, str]:
    require(policy.may_read_conversation_list(actor))
    return await hub.desk.store.tags()


async def put_queue(
    hub: Hub,
    actor: User,
    code: str,
    *,
    name: str,
    timezone: str,
    days: Sequence[int],
    open_at: str,
    close_at: str,
    out_of_hours_text: str,
    ip: str | None = None,
) -> QueueView:
    """Create or reconfigure a queue (name, business hours, out-of-hours reply). Audited."""
    require(policy.may_supervise_desk(actor))
    if not is_queue_code(code):
        raise ActionError("invalid_request", "a queue code is 2-32 of a-z 0-9 _ -, starting with a letter")
    if not 1 <= len(name.strip()) <= 64:
        raise ActionError("invalid_request", "a queue name has 1 to 64 characters")
    if len(out_of_hours_text) > 1000:
        raise ActionError("invalid_request", "the out-of-hours reply has at most 1000 characters")
    # data-loss prevention: posted to every customer who writes out of hours (staff to customer)
    out_of_hours_text = dlp.screen_text(hub.settings, actor, [(Role.CUSTOMER, False)], out_of_hours_text)
    try:
        closes = parse_hhmm(close_at) or 1440  # closing at 00:00 is midnight at the end of the day
        hours = BusinessHours(timezone, tuple(sorted(set(days))), parse_hhmm(open_at), closes)
        if hours.open_minute == 1440:
            raise ValueError("a queue cannot open at 24:00")
        hours.validate()
    except ValueError as exc:
        raise ActionError("invalid_request", str(exc)) from None
    async with hub.db.transaction("service_put_queue") as conn:
        row = await hub.desk.store.put_queue(code, name.strip(), hours, out_of_hours_text.strip(), conn)
        await record(
            hub,
            actor=actor,
            action=SERVICE_QUEUE_CONFIGURED,
            target=f"queue:{code}",
            ip=ip,
            details={"name": row.name, "hours": hours.describe()},
            conn=conn,
        )
    return _queue_view(row, hub.desk.clock())


async def put_agent(
    hub: Hub, actor: User, username: str, *, capacity: int | None, queues: Sequence[str] | None, ip: str | None = None
) -> AgentView:
    """Put an agent on the desk or change their capacity and queues. Audited."""
    require(policy.may_supervise_desk(actor))
    user = await hub.users.by_username(username)
    if user is None or user.role is not Role.AGENT:
        raise ActionError("not_found", "no such service agent")
    if capacity is not None and not 1 <= capacity <= 50:
        raise ActionError("invalid_request", "capacity is 1 to 50 conversations")
    if queues is not None and len(queues) > 50:
        raise ActionError("invalid_request", "at most 50 queues")
    try:
        async with hub.db.transaction("service_put_agent") as conn:
            await hub.desk.store.put_agent(user.id, capacity, queues, conn)
            await record(
                hub,
                actor=actor,
                action=SERVICE_AGENT_CONFIGURED,
                target=user,
                ip=ip,
                details={"capacity": capacity, "queues": None if queues is None else sorted(set(queues))},
                conn=conn,
            )
    except ServiceError as exc:
        raise ActionError(exc.code, exc.message) from None
    agent = await hub.desk.store.agent(user.id)
    assert agent is not None
    await routing.publish(hub, await routing.agent_state(hub, user.id))
    await routing.route_for_agent(hub, user.id)  # more capacity or a new queue may take someone now
    return _agent_view(agent)
