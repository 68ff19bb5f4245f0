"""Public data types of the SDK (msgspec Structs, immutable).

These mirror the hub's wire format (protocol v1 and the HTTP API) but are the SDK's
own: the SDK never imports the server package. Decoding is lenient about *extra*
fields, so a newer server that adds fields does not break an older SDK.

Timestamps (``ts``, ``server_time``, ``last_message_ts``) are integers: milliseconds
since the Unix epoch, UTC.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Generic, TypeVar

from msgspec import Struct

from .alerts import Alert, InboxUpdate
from .desk import AgentState, ConversationAdded, ConversationRemoved, RmChanged, ServiceAssigned, ServiceStatus, SystemBody
from .liveness import PresenceEvent, TypingEvent
from .contacts import ContactEvent
from .cards import CardBody, Signature
from .media import ImageBody, VoiceBody

__all__ = [
    "TextBody",
    "UnknownBody",
    "RecalledBody",
    "EditBody",
    "RecallBody",
    "Body",
    "Message",
    "DlpNotice",
    "Receipt",
    "Limits",
    "Hello",
    "Disconnected",
    "Reconnected",
    "Event",
    "User",
    "Session",
    "Me",
    "Conversation",
    "History",
    "WsTicket",
    "ArticleBody",
    "NoticeBody",
    "Notice",
    "NoticeRecalled",
    "AccountReceipt",
    "Account",
    "FollowedAccount",
    "NoticePage",
    "Target",
    "ResolvedTarget",
    "NoticeRecord",
    "NoticeRecordOf",
    "NoticeStats",
]


# --- message bodies --------------------------------------------------------------


class TextBody(Struct, frozen=True, tag="text", tag_field="kind"):
    """A plain-text body: ``{"kind": "text", "text": ...}``."""

    text: str


class RecalledBody(Struct, frozen=True, tag="recalled", tag_field="kind"):
    """The body of a message its sender withdrew (recall): show "message withdrawn"."""


class EditBody(Struct, frozen=True, tag="edit", tag_field="kind"):
    """A change (feature ``edit``): message ``message_id`` now reads ``body``, its current
    body. Apply it to that message (:class:`bankhub_client.revise.MessageLog`); never show it."""

    message_id: str
    body: TextBody | RecalledBody


class RecallBody(Struct, frozen=True, tag="recall", tag_field="kind"):
    """A change (feature ``edit``): message ``message_id`` was withdrawn by its sender.
    Apply it (:class:`bankhub_client.revise.MessageLog`); never show it."""

    message_id: str


class UnknownBody(Struct, frozen=True):
    """A body of a kind this SDK version does not know (e.g. a future ``image``).

    ``data`` is the whole JSON object, ``kind`` included.
    """

    kind: str
    data: dict[str, Any]


Body = TextBody | SystemBody | EditBody | RecallBody | RecalledBody | CardBody | ImageBody | VoiceBody | UnknownBody


class DlpNotice(Struct, frozen=True):
    """One value the hub's data-loss prevention masked in what I sent (hub feature ``dlp``):
    its ``kind`` (``card``, ``resident_id``, ``bank_account``, ``cvv``, ``otp``) and the mask
    that replaced it (``6222 **** **** 7890``)."""

    kind: str
    masked: str


class Message(Struct, frozen=True):
    """A committed message. ``(conversation_id, seq)`` identifies it; seqs start at 1."""

    conversation_id: str
    message_id: str
    seq: int
    sender_id: str
    client_msg_id: str
    body: Body
    ts: int
    edited_ts: int | None = None  # when its sender last edited it (None: never)
    # on what Client.send/edit return only: values the hub masked (then ``body`` is the masked
    # body every member sees; tell the user never to send card numbers, CVVs or codes in chat)
    dlp: tuple[DlpNotice, ...] = ()

    @property
    def text(self) -> str | None:
        """The text of a text message, else None."""
        return self.body.text if isinstance(self.body, TextBody) else None


# --- WebSocket events ------------------------------------------------------------


class Receipt(Struct, frozen=True):
    """A member's read position in a conversation moved to ``read_seq``.

    ``unread`` is my own unread count, set on receipts about me. ``id`` is the request
    id when the receipt answers one of my own ``read`` requests.
    """

    conversation_id: str
    user_id: str
    read_seq: int
    unread: int | None = None
    id: str | None = None


class Limits(Struct, frozen=True):
    """The limits the server enforces, from ``hello`` (defaults: the hub's defaults)."""

    max_frame_bytes: int = 64 * 1024
    max_text_chars: int = 4000
    max_sync_limit: int = 500
    frames_per_second: float = 50.0
    frame_burst: int = 100
    outbound_queue: int = 1024
    # more than max_strikes rejected frames within strike_window seconds close with 1008;
    # no frame (a message or a WebSocket ping) for idle_timeout seconds closes with 4000
    # (the client's keep-alive ping, every ping_interval = 20 s, keeps a quiet connection open)
    max_strikes: int = 20
    strike_window: float = 10.0
    idle_timeout: float = 90.0


class Hello(Struct, frozen=True):
    """The first frame of every connection. ``features``: the additive v1 features the
    hub speaks (``sync.listed_only``, ...; see the protocol document)."""

    protocol: int
    session_id: str
    user_id: str
    username: str
    role: str
    node: str
    server_time: int
    limits: Limits = Limits()
    features: list[str] = []


class Disconnected(Struct, frozen=True):
    """The connection dropped. ``will_reconnect`` says whether the client retries.

    ``code`` is the WebSocket close code (1006 when the network failed without a close).
    Sends made meanwhile are kept and sent after the reconnect.
    """

    code: int
    reason: str
    will_reconnect: bool


class Reconnected(Struct, frozen=True):
    """A new connection is up (``hello`` received) after ``attempts`` tries.

    The messages missed while disconnected follow this event, in order, then live ones.
    """

    hello: Hello
    attempts: int
    downtime: float


# --- official accounts -------------------------------------------------------------


class ArticleBody(Struct, frozen=True, tag="article", tag_field="kind", omit_defaults=True):
    """A rich notice shown as a card. Links (``image_url``, ``action_url``) must be
    ``https://`` or the app's own ``bankhub://`` deep links: the hub refuses others."""

    title: str
    summary: str = ""
    body: str = ""
    image_url: str | None = None
    action_url: str | None = None
    action_label: str | None = None


NoticeBody = TextBody | ArticleBody | UnknownBody
"""A notice body: ``text``, ``article``, or a kind this SDK version does not know."""


class Notice(Struct, frozen=True):
    """A published notice of an official account I follow, as a follower sees it.

    ``(account_id, seq)`` identifies it; ``seq`` is its place in the account's event
    stream, so a follower's seqs have gaps (notices targeted at others). A recalled
    notice keeps its place but has no body (``recalled`` is True, ``body`` None).
    """

    account_id: str
    notice_id: str
    seq: int
    ts: int
    body: NoticeBody | None = None
    recalled: bool = False
    recalled_ts: int | None = None
    # the hub's signature (check it: bankhub_client.cards.verify_notice), and the body's JSON
    # object as received, which it covers; None on a recalled notice or one published unsigned
    signature: Signature | None = None
    body_data: dict[str, Any] | None = None

    @property
    def text(self) -> str | None:
        """The text of a text notice, the title of an article, else None."""
        if isinstance(self.body, TextBody):
            return self.body.text
        if isinstance(self.body, ArticleBody):
            return self.body.title
        return None


class NoticeRecalled(Struct, frozen=True):
    """The notice ``notice_id`` (at ``seq``) of an account was withdrawn: hide its body.

    ``event_seq`` is the recall's own place in the account stream when it arrived live;
    None when the client learnt of it from ``sync`` (which does not say).
    """

    account_id: str
    notice_id: str
    seq: int
    ts: int
    event_seq: int | None = None


class AccountReceipt(Struct, frozen=True):
    """My read position in an official account moved to ``read_seq``; ``unread`` is
    my exact unread count there. ``id`` is the request id when it answers my own
    ``read_notices``."""

    account_id: str
    read_seq: int
    unread: int
    id: str | None = None


Event = (
    Message
    | Receipt
    | Disconnected
    | Reconnected
    | Notice
    | NoticeRecalled
    | AccountReceipt
    | Alert
    | InboxUpdate
    | RmChanged
    | ConversationAdded
    | ConversationRemoved
    | ServiceStatus
    | ServiceAssigned
    | AgentState
    | TypingEvent
    | PresenceEvent
    | ContactEvent
)
"""What :meth:`bankhub_client.Client.events` yields."""


# --- HTTP API --------------------------------------------------------------------


class User(Struct, frozen=True):
    """A user as the hub shows them (``org_id``: their org; ``rm_id``: a customer's RM)."""

    id: str
    username: str
    display_name: str
    role: str
    org_id: str | None = None
    rm_id: str | None = None


class Session(Struct, frozen=True):
    """A login: ``token`` authenticates HTTP requests and WebSocket connections."""

    token: str
    session_id: str
    expires_at: dt.datetime | int
    user: User


class Me(User, frozen=True):
    """The logged-in user (``GET /v1/me``): a :class:`User`."""


class Conversation(Struct, frozen=True):
    """A conversation as listed for me. ``members`` are user ids."""

    id: str
    kind: str
    title: str | None
    last_seq: int
    read_seq: int
    unread: int
    members: list[str]
    last_message_ts: int | None = None


class History(Struct, frozen=True):
    """A page of history: ``messages`` newest first; ``has_more`` if older ones exist."""

    messages: list[Message]
    has_more: bool


class WsTicket(Struct, frozen=True):
    """A single-use ticket for ``/v1/ws?ticket=...``, valid ``expires_in`` seconds."""

    ticket: str
    expires_in: float


class Account(Struct, frozen=True):
    """An official account. ``audience`` is ``customer`` or ``staff``; ``following``
    says whether I follow it (None where the hub does not say)."""

    id: str
    handle: str
    name: str
    description: str = ""
    audience: str = "customer"
    is_default: bool = False
    requires_approval: bool = False
    following: bool | None = None


class FollowedAccount(Struct, frozen=True):
    """An account I follow: its stream position, my read position and exact unread count."""

    account: Account
    last_seq: int
    read_seq: int
    unread: int


class NoticePage(Struct, frozen=True):
    """A page of an account's notices for me: newest first; ``has_more`` if older ones exist."""

    notices: list[Notice]
    has_more: bool


class Target(Struct, frozen=True, omit_defaults=True):
    """Who a notice is for, when publishing. Every dimension given must match; within a
    dimension any value does. ``org_codes``: orgs (and their subtrees) by code;
    ``tags``/``segments``: the followers' tags and segment; ``staff_only``: no customers.
    All None (the default): every follower."""

    org_codes: list[str] | None = None
    tags: list[str] | None = None
    segments: list[str] | None = None
    staff_only: bool = False


class ResolvedTarget(Struct, frozen=True):
    """A published notice's audience as stored: orgs by id (see :class:`Target`)."""

    org_ids: list[str] | None = None
    tags: list[str] | None = None
    segments: list[str] | None = None
    staff_only: bool = False


BodyT = TypeVar("BodyT")


class NoticeRecordOf(Struct, Generic[BodyT], frozen=True):
    """The fields of a notice record, its body of type ``BodyT``: the SDK decodes
    ``NoticeRecordOf[msgspec.Raw]``, then the body leniently, into a :class:`NoticeRecord`."""

    id: str
    account_id: str
    status: str
    body: BodyT
    target: ResolvedTarget
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


class NoticeRecord(NoticeRecordOf[NoticeBody], frozen=True):
    """A notice as its account's administrators see it (publish, approve, outbox).

    ``status`` is ``pending_approval``, ``scheduled``, ``published``, ``rejected`` or
    ``recalled``; ``seq`` is set once published. The body is kept after a recall, with
    who recalled it and why.
    """


class NoticeStats(Struct, frozen=True):
    """A notice's figures: followers it targets, pushes to connected devices (summed
    over nodes, updated every few seconds) and targeted followers who have read it."""

    notice_id: str
    status: str
    targeted_followers: int
    delivered_online: int
    read: int
