"""The service desk's records and row decoding, shared by the parts of its store.

The records here are what the desk's actions read (a session, a queue, an agent, what a
routing transaction did); the supervisor's figures, which an HTTP answer carries, are in
:mod:`bankhub.models`. :class:`StorePart` is what every part of the store holds.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import asyncpg
import msgspec

from ...crypto.keyring import Keyring
from ...desk.hours import BusinessHours
from ...models import DeskAgent
from ..db import Database

__all__ = [
    "StorePart",
    "ServiceError",
    "QueueRow",
    "AgentRow",
    "SessionRow",
    "DeskText",
    "WaitingEntry",
    "QueueSnapshot",
    "RouteOutcome",
    "Change",
    "DEFAULT_HANDLE_SECONDS",
    "HANDLE_SAMPLE",
    "SESSION_COLS",
    "NO_SESSION",
    "CHANGED_MEANWHILE",
    "session_from_row",
    "queue_from_row",
    "agent_fields",
    "recent_handle_sql",
    "handle_estimate",
    "is_retryable",
    "uid",
    "sid",
]

DEFAULT_HANDLE_SECONDS = 300.0
"""The handle time estimates assume for a queue with no finished conversations yet."""
HANDLE_SAMPLE = 50
"""The last finished conversations of a queue the handle-time estimate averages over."""

NO_SESSION = "no such service session"
CHANGED_MEANWHILE = "the session changed meanwhile (transferred or closed); look again"


class StorePart:
    """One part of the desk's store (one table group). ``keyring`` seals and opens the
    desk's free text (notes, CSAT comments; :mod:`bankhub.desk.sealing`); without one
    (seeding tools that never touch texts) writing or reading a text raises ``RuntimeError``."""

    def __init__(self, db: Database, keyring: Keyring | None = None) -> None:
        self.db = db
        self.keyring = keyring


class ServiceError(Exception):
    """An expected refusal found inside a transaction (``code``: not_found, conflict, ...)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class QueueRow(msgspec.Struct):
    code: str
    name: str
    timezone: str
    days: list[int]
    open_minute: int
    close_minute: int
    out_of_hours_text: str
    revision: int

    @property
    def hours(self) -> BusinessHours:
        return BusinessHours(self.timezone, tuple(self.days), self.open_minute, self.close_minute)


class AgentRow(DeskAgent):
    last_assigned_at: dt.datetime | None = None


class SessionRow(msgspec.Struct):
    id: str
    conversation_id: str
    customer_id: str
    queue: str
    state: str
    ticket: int | None
    priority: int
    agent_id: str | None
    start_seq: int
    opened_at: dt.datetime
    queued_at: dt.datetime | None
    assigned_at: dt.datetime | None
    closed_at: dt.datetime | None
    closed_by: str | None
    tags: list[str]
    csat: int | None


class DeskText(msgspec.Struct, frozen=True):
    """A sealed desk text as read: ``text``, or None with ``unreadable`` saying why
    (``shredded``: the conversation was erased; ``undecryptable``: the stored bytes failed
    their integrity check). Both None: there is no text."""

    text: str | None = None
    unreadable: str | None = None


class WaitingEntry(msgspec.Struct):
    session_id: str
    customer_id: str
    conversation_id: str
    position: int


class QueueSnapshot(msgspec.Struct):
    """A queue's waiting list right after a change, with what estimates need."""

    queue: str
    revision: int
    waiting: list[WaitingEntry]
    slots: int  # conversations the queue's available agents serve at once
    avg_handle_seconds: float


class RouteOutcome(msgspec.Struct):
    """What one routing transaction did: sessions it assigned (now ``active``) and the queue afterwards."""

    assigned: list[SessionRow]
    snapshot: QueueSnapshot | None


class Change(msgspec.Struct):
    """A session changed by a close, transfer or cancel: the session afterwards, the agent
    who lost it (None if none), queues whose waiting lists moved, what routing did."""

    session: SessionRow
    released_agent: str | None = None
    routed: RouteOutcome | None = None


SESSION_COLS = ", ".join(SessionRow.__struct_fields__)
"""The columns of ``service_sessions`` a :class:`SessionRow` is read from."""


def uid(value: str) -> uuid.UUID:
    return uuid.UUID(value)


def sid(value: Any) -> str | None:
    return None if value is None else str(value)


_SESSION_IDS = frozenset({"id", "conversation_id", "customer_id", "agent_id", "closed_by"})  # uuid columns, as text


def session_from_row(r: Any) -> SessionRow:
    """A row of :data:`SESSION_COLS`."""
    fields: dict[str, Any] = {name: sid(r[name]) if name in _SESSION_IDS else r[name] for name in SessionRow.__struct_fields__}
    return SessionRow(**fields)


def queue_from_row(r: Any) -> QueueRow:
    """A row of ``service_queues`` (its columns are the record's fields, and more)."""
    return QueueRow(**{name: r[name] for name in QueueRow.__struct_fields__})


def agent_fields(r: Any) -> dict[str, Any]:
    """The :class:`~bankhub.models.DeskAgent` fields of a row of ``service_agents`` joined
    with ``users`` and the agent's ``queues`` (for :class:`AgentRow` and
    :class:`~bankhub.models.AgentFigures`)."""
    return {name: str(r[name]) if name == "user_id" else r[name] for name in DeskAgent.__struct_fields__}


def recent_handle_sql(queue: str, sample: str) -> str:
    """SQL for the average handle time in seconds (NULL: none yet) of the queue named by the
    parameter ``queue`` (e.g. ``"$1"``), over its last ``sample`` finished conversations."""
    return f"""SELECT avg(extract(epoch FROM ended_at - assigned_at)) FROM (
                   SELECT ended_at, assigned_at FROM service_assignments
                   WHERE queue = {queue} AND ended_at IS NOT NULL ORDER BY ended_at DESC LIMIT {sample}) t"""


def handle_estimate(average: Any) -> float:
    """The handle time estimates assume, from :func:`recent_handle_sql`'s average."""
    return float(average) if average is not None and average > 0 else DEFAULT_HANDLE_SECONDS


def is_retryable(exc: BaseException) -> bool:
    """A transaction lost to a deadlock or serialisation failure: safe to run again."""
    return isinstance(exc, (asyncpg.exceptions.DeadlockDetectedError, asyncpg.exceptions.SerializationError))
