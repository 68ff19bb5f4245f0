"""Records that cross layers: passed between storage, policy, actions, the HTTP API and
the gateway. Plain data (a pure conversion at most), no I/O.

A record belongs here when a layer above the actions names it or receives it: the HTTP
handlers, the gateway, or an answer's body (as ``NoticeStats`` in ``StatsOut``). Rows
only the actions read (a desk session, an audit row) stay with their store in
:mod:`bankhub.storage`. Sort keys of paged lists live here too: the HTTP layer turns
them into opaque cursors.
"""

from __future__ import annotations

import datetime as dt
import enum
import uuid

import msgspec

from .protocol.frames import MessageBody, Notice, NoticeBody, Signature

__all__ = [
    "Role",
    "STAFF_ROLES",
    "User",
    "Session",
    "SessionInfo",
    "Membership",
    "ConversationSummary",
    "ConversationKey",
    "OrgRow",
    "OfficialAccount",
    "AccountKey",
    "account_key",
    "FollowedAccount",
    "Target",
    "NoticeRecord",
    "NoticeEventRow",
    "NoticeStats",
    "BookKey",
    "RmListed",
    "RequestKey",
    "QueueFigures",
    "DeskAgent",
    "AgentFigures",
    "AlertSystem",
    "MessageRevision",
    "RevisionTarget",
]


class Role(str, enum.Enum):
    CUSTOMER = "customer"
    RM = "rm"
    AGENT = "agent"
    STAFF = "staff"
    BRANCH_ADMIN = "branch_admin"
    HEAD_OFFICE_ADMIN = "head_office_admin"
    COMPLIANCE = "compliance"


STAFF_ROLES = frozenset(r for r in Role if r is not Role.CUSTOMER)


class User(msgspec.Struct, frozen=True, gc=False):
    id: str
    username: str
    display_name: str
    role: Role
    org_id: str
    rm_id: str | None = None
    disabled: bool = False
    segment: str | None = None  # customer segment (e.g. "wealth"), for targeting
    tags: tuple[str, ...] = ()  # customer tags, for targeting
    # a service-widget visitor (docs/widget.md): may only talk to the service desk (policy.py)
    visitor: bool = False


class Session(msgspec.Struct, frozen=True):
    id: str
    user: User
    expires_at: dt.datetime
    follows: tuple[str, ...] = ()  # official accounts followed when the session was loaded
    org_path: tuple[str, ...] = ()  # the user's org and its ancestors, nearest first


class Membership(msgspec.Struct, frozen=True):
    """One user's place in one conversation: the facts the policy decides on."""

    conversation_id: str
    kind: str
    user_id: str
    role: str
    read_seq: int
    last_seq: int


class ConversationSummary(msgspec.Struct):
    id: str
    kind: str
    title: str | None
    last_seq: int
    read_seq: int
    unread: int
    members: list[str]
    last_message_ts: int | None = None


class OfficialAccount(msgspec.Struct, frozen=True):
    """An official account: the facts the policy decides on, and what followers see."""

    id: str
    handle: str
    name: str
    description: str
    owner_org_id: str
    audience: str  # "customer" (anyone may follow) or "staff" (staff only)
    is_default: bool
    requires_approval: bool
    last_seq: int
    owner_org_path: tuple[str, ...] = ()  # the owner org and its ancestors, nearest first


class AlertSystem(msgspec.Struct, frozen=True):
    """An internal system allowed to send alerts (core banking, the card platform, ...).

    Its HMAC secret is not part of this record: only the signature check sees it.
    """

    id: str
    name: str
    description: str
    categories: tuple[str, ...]  # the alert categories it may send
    rate_per_second: float
    burst: int
    disabled: bool = False


class SessionInfo(msgspec.Struct):
    """One active session as its owner sees it in the session list."""

    id: str
    created_at: dt.datetime
    expires_at: dt.datetime
    user_agent: str | None
    ip: str | None


ConversationKey = tuple[dt.datetime | None, dt.datetime, uuid.UUID]
"""The sort key of a user's conversation list: ``(last activity, created_at, id)``, descending."""


class OrgRow(msgspec.Struct, frozen=True):
    """One org of the tree: its id, code, name, kind and parent's code (None for the head office)."""

    id: str
    code: str
    name: str
    kind: str
    parent_code: str | None


# --- official accounts and their notices ------------------------------------------------

AccountKey = tuple[bool, str, uuid.UUID]
"""The sort key of account lists: ``(not default, name, id)``, ascending."""


def account_key(a: OfficialAccount) -> AccountKey:
    """The position of ``a`` in account lists (default accounts first, then by name and id)."""
    return (not a.is_default, a.name, uuid.UUID(a.id))


class FollowedAccount(msgspec.Struct):
    account: OfficialAccount
    read_seq: int
    unread: int
    followed_at: dt.datetime


class Target(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True, gc=False):
    """Who a notice is for; ``None`` on a dimension: no restriction. The rule that applies
    it is :func:`bankhub.targeting.matches`."""

    org_ids: list[str] | None = None
    tags: list[str] | None = None
    segments: list[str] | None = None
    staff_only: bool = False


def _ms(ts: dt.datetime | None) -> int | None:
    return None if ts is None else int(ts.timestamp() * 1000)


class NoticeRecord(msgspec.Struct):
    """A notice as its publishers see it: status, targeting, workflow and stats."""

    id: str
    account_id: str
    status: str
    body: NoticeBody
    target: Target
    author_id: str
    created_at: dt.datetime
    seq: int | None = None
    approved_by: str | None = None
    rejected_by: str | None = None
    scheduled_at: dt.datetime | None = None
    published_at: dt.datetime | None = None
    recall_seq: int | None = None
    recalled_at: dt.datetime | None = None
    recalled_by: str | None = None
    recall_reason: str | None = None
    delivered_online: int = 0
    signature: Signature | None = None  # the hub's, made at publication (None before delta 0017)

    def as_notice(self) -> Notice:
        """The follower's view: a recalled notice keeps its place but loses its body."""
        assert self.seq is not None and self.published_at is not None
        recalled = self.recall_seq is not None
        return Notice(
            account_id=self.account_id,
            notice_id=self.id,
            seq=self.seq,
            ts=_ms(self.published_at) or 0,
            body=None if recalled else self.body,
            recalled=recalled,
            recalled_ts=_ms(self.recalled_at),
            signature=None if recalled else self.signature,
        )


class NoticeEventRow(msgspec.Struct):
    """One event of an account stream (a publication or a recall), with its audience."""

    event_seq: int
    notice: Notice
    target: Target


class NoticeStats(msgspec.Struct):
    notice_id: str
    status: str
    targeted_followers: int  # followers the notice targets (who followed before it was published)
    delivered_online: int  # pushed to a connected device of a follower, summed over nodes
    read: int  # targeted followers whose read position passed it


# --- relationship managers and dual control -----------------------------------------------

BookKey = tuple[dt.datetime | None, str, str]
"""The sort key of an RM's book: ``(last message time, display name, username)``."""


class RmListed(msgspec.Struct):
    """An RM in an administrator's directory: who, where, how many customers, availability."""

    user_id: str
    username: str
    display_name: str
    branch: str  # org code
    org_name: str
    customers: int
    status: str  # online, away or off_duty


RequestKey = tuple[dt.datetime, str]
"""The sort key of the pending dual-control requests: ``(created_at, id)``, oldest first."""


# --- service-desk figures (a supervisor's answer) ------------------------------------------


class QueueFigures(msgspec.Struct):
    queue: str
    name: str
    waiting: int
    longest_wait_s: float | None
    avg_wait_s: float | None
    avg_handle_s: float | None
    handled: int
    csat_avg: float | None
    csat_count: int


class DeskAgent(msgspec.Struct):
    """A service-desk agent: who, their state (available, busy, away), how many
    conversations they take at once and have now, and the queues they serve."""

    user_id: str
    username: str
    display_name: str
    state: str
    capacity: int
    active: int
    queues: list[str]


class AgentFigures(DeskAgent):
    handled: int
    avg_handle_s: float | None
    csat_avg: float | None
    csat_count: int


class MessageRevision(msgspec.Struct, gc=False):
    """A body a recall or edit replaced (compliance reads only): message ``message_id``'s
    ``revision``-th change, of ``kind`` ``edit`` or ``recall``, made at ``ts`` (ms) by the
    message at ``change_seq``. ``body`` is what the message read before that change (a
    ``text`` body, or ``shredded``/``undecryptable`` when it cannot be read)."""

    message_id: str
    revision: int
    kind: str
    change_seq: int
    ts: int
    body: MessageBody


class RevisionTarget(msgspec.Struct, frozen=True, gc=False):
    """The facts a recall or edit of message ``message_id`` is decided on: its sender, its
    stored body ``kind``, when it was committed (the database's clock), how often it was edited,
    whether it was withdrawn, and whether its body can be read at all."""

    conversation_id: str
    message_id: str
    seq: int
    sender_id: str
    kind: str
    created_at: dt.datetime
    edits: int
    recalled: bool
    readable: bool
