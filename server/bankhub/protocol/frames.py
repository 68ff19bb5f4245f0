"""Protocol v1 frames: the typed shape of every JSON frame on ``/v1/ws``.

Every frame is a JSON object with a ``type``. Client frames that expect an answer
carry an ``id`` (a client-chosen string); the answer echoes it. The JSON Schema in
``schema/protocol.v1.json`` is generated from these classes (``bankhub schema``) and a
test keeps the two identical, so this module is the single source of the wire format.
``docs/protocol.md`` is the prose specification.

Timestamps are integers: milliseconds since the Unix epoch, UTC.
"""

from __future__ import annotations

from typing import Annotated

import msgspec
from msgspec import Meta, Struct

from ..text import Line, Text

__all__ = [
    "PROTOCOL_VERSION",
    "PROTOCOL_FEATURES",
    "SUBPROTOCOL",
    "FrameId",
    "ConversationId",
    "TextBody",
    "ShreddedBody",
    "UndecryptableBody",
    "Body",
    "MessageBody",
    "Send",
    "Read",
    "Sync",
    "Ping",
    "ClientFrame",
    "Limits",
    "Message",
    "Hello",
    "Sent",
    "MessageEvent",
    "Receipt",
    "ConversationSync",
    "Synced",
    "Error",
    "Pong",
    "ServerFrame",
    "ErrorCode",
    "CloseCode",
    "encode",
    "MAX_TEXT_CHARS",
    "AccountId",
    "TextNotice",
    "ArticleNotice",
    "NoticeBody",
    "Notice",
    "ReadNotices",
    "NoticeEvent",
    "NoticeRecalled",
    "AccountReceipt",
    "AccountSync",
    "AlertId",
    "Alert",
    "AlertEvent",
    "SyncInbox",
    "InboxSynced",
    "ReadAlerts",
    "InboxUpdate",
    "SystemBody",
    "StaffCard",
    "CustomerCard",
    "RmChanged",
    "ConversationAdded",
    "ConversationRemoved",
    "ServiceStatus",
    "ServiceNote",
    "ServiceAssigned",
    "AgentState",
]

PROTOCOL_VERSION = 1
# Additive v1 features this hub speaks, listed in ``hello.features`` so a client can use
# them without guessing (a hub from before a feature refuses its fields as
# ``invalid_frame``). ``sync.listed_only``: ``sync`` may answer only the conversations it
# lists (a gap fill, or a resume split over several frames).
PROTOCOL_FEATURES = ("sync.listed_only",)
SUBPROTOCOL = "bankhub.v1"

FrameId = Annotated[Line, Meta(min_length=1, max_length=64, description="Client-chosen request id, echoed in the answer")]
ConversationId = Annotated[Line, Meta(min_length=1, max_length=64)]
ClientMsgId = Annotated[
    Line,
    Meta(
        min_length=1,
        max_length=64,
        description="Client-chosen idempotency key: resending the same value never stores a second message",
    ),
]
Seq = Annotated[int, Meta(ge=0, le=2**62)]
AccountId = Annotated[Line, Meta(min_length=1, max_length=64, description="An official account id")]
MAX_TEXT_CHARS = 4000


class ErrorCode:
    """Stable error codes carried by ``error`` frames (and HTTP problem responses)."""

    MALFORMED = "malformed"  # not a JSON object / not UTF-8 / nested too deeply / binary frame
    UNKNOWN_TYPE = "unknown_type"  # ``type`` missing or not a client frame type
    INVALID_FRAME = "invalid_frame"  # a known type with missing/extra/ill-typed fields
    RATE_LIMITED = "rate_limited"  # too many frames; slow down and retry later
    FORBIDDEN = "forbidden"  # the policy denies this action
    NOT_FOUND = "not_found"  # no such conversation (or not visible to you)
    UNAVAILABLE = "unavailable"  # storage is unreachable; nothing was stored, retry
    INTERNAL = "internal"  # an unexpected server fault; nothing was stored
    GONE = "gone"  # the conversation was erased (crypto-shredded): it accepts no more messages


class CloseCode:
    """WebSocket close codes used by the hub (documented in docs/protocol.md)."""

    NORMAL = 1000
    GOING_AWAY = 1001
    POLICY_VIOLATION = 1008  # sustained abuse, session revoked or expired
    MESSAGE_TOO_BIG = 1009  # a frame over ``limits.max_frame_bytes``
    INTERNAL_ERROR = 1011
    SERVICE_RESTART = 1012  # node draining: reconnect (to another node) and sync
    IDLE_TIMEOUT = 4000  # no frame from the client for ``limits.idle_timeout`` seconds: reconnect and sync
    SLOW_CONSUMER = 4008  # outbound queue overflowed: reconnect and sync


# --- message bodies ---------------------------------------------------------------


class TextBody(Struct, tag="text", tag_field="kind", forbid_unknown_fields=True, gc=False):
    """A plain-text message body. Later kinds (image, voice, card) join the ``Body`` union."""

    text: Annotated[Text, Meta(min_length=1, max_length=MAX_TEXT_CHARS)]


class ShreddedBody(Struct, tag="shredded", tag_field="kind", forbid_unknown_fields=True):
    """Sent by the server only: the conversation was erased (crypto-shredded).

    Its key was destroyed, so the body can never be recovered; the message keeps its
    place (ids, seq, sender, time) so cursors and seqs stay gap-free.
    """


class UndecryptableBody(Struct, tag="undecryptable", tag_field="kind", forbid_unknown_fields=True):
    """Sent by the server only: the stored body failed its integrity check.

    Damaged or tampered storage (say, a ciphertext copied from another row). The message
    keeps its place (ids, seq, sender, time); the hub logs a warning naming it.
    """


class SystemBody(Struct, tag="system", tag_field="kind", omit_defaults=True, forbid_unknown_fields=True, gc=False):
    """Sent by the server only: the bank speaking inside a conversation.

    Handover notices, the service bot's answers, queue and assignment notices, an away
    RM's auto-reply, the out-of-hours reply. Stored, numbered and synced like any message;
    its sender is the hub's system user. ``event`` is a stable code (see
    docs/protocol.md), ``text`` what to show, ``data`` the facts behind it.
    """

    event: str
    text: str
    data: dict[str, str] = {}


Body = TextBody
"""What a client may send."""

MessageBody = TextBody | SystemBody | ShreddedBody | UndecryptableBody
"""What a message carries: a sent body, a notice from the bank, or a server marker standing in for one."""


# --- client frames ----------------------------------------------------------------


class Send(Struct, tag="send", tag_field="type", forbid_unknown_fields=True):
    """Store a message in a conversation. Answered by ``sent`` (after commit) or ``error``."""

    id: FrameId
    conversation_id: ConversationId
    client_msg_id: ClientMsgId
    body: Body


class Read(Struct, tag="read", tag_field="type", forbid_unknown_fields=True):
    """Move my read position in a conversation up to ``seq``. Answered by ``receipt``."""

    id: FrameId
    conversation_id: ConversationId
    seq: Seq


class Sync(Struct, tag="sync", tag_field="type", forbid_unknown_fields=True):
    """Fetch what I missed: for each of my conversations the messages after my cursor.

    ``since`` maps conversation id to the last seq the client holds; a conversation not
    listed is read from its beginning, unless ``listed_only`` is true: then only the
    listed conversations are answered (feature ``sync.listed_only``). Answered by
    ``synced``; repeat with the new cursors while any conversation says ``has_more``.
    """

    id: FrameId
    since: dict[ConversationId, Seq] = {}
    limit: Annotated[int, Meta(ge=1, le=500)] = 100
    # true: answer only the conversations in ``since`` (a gap fill, or one of several
    # frames a client with more conversations than fit in one frame resumes with)
    listed_only: bool = False
    # official accounts I follow: the last account event seq I hold (my ``cursor``). An
    # account not listed is read from my read position, i.e. its unread notices.
    accounts: dict[AccountId, Seq] = {}


class Ping(Struct, tag="ping", tag_field="type", forbid_unknown_fields=True):
    """Application-level keep-alive. Answered by ``pong``."""

    id: FrameId | None = None


class ReadNotices(Struct, tag="read_notices", tag_field="type", forbid_unknown_fields=True):
    """Move my read position in an official account up to ``seq``. Answered by ``account_receipt``."""

    id: FrameId
    account_id: AccountId
    seq: Seq


AlertId = Annotated[Line, Meta(min_length=1, max_length=64, description="An alert id")]


class SyncInbox(Struct, tag="sync_inbox", tag_field="type", forbid_unknown_fields=True):
    """Fetch my alert inbox after ``since`` (the last inbox seq I hold; 0: from the start).

    Answered by ``inbox_synced``; repeat from its ``cursor`` while ``has_more``.
    """

    id: FrameId
    since: Seq = 0
    limit: Annotated[int, Meta(ge=1, le=500)] = 100


class ReadAlerts(Struct, tag="read_alerts", tag_field="type", forbid_unknown_fields=True):
    """Mark alerts read: those listed, and/or every alert up to ``up_to_seq``. Answered by ``inbox_update``."""

    id: FrameId
    alert_ids: Annotated[list[AlertId], Meta(max_length=100)] = []
    up_to_seq: Seq | None = None


ClientFrame = Send | Read | Sync | Ping | ReadNotices | SyncInbox | ReadAlerts


# --- server frames ----------------------------------------------------------------


class Limits(Struct, forbid_unknown_fields=True):
    """The limits this server enforces, announced in ``hello``.

    ``max_strikes`` and ``strike_window``: more than ``max_strikes`` rejected frames
    (errors ``malformed``, ``unknown_type``, ``invalid_frame``, ``rate_limited``) within
    ``strike_window`` seconds close the connection with 1008, after every request accepted
    before it has been answered. ``idle_timeout``: a connection that sends no frame (a
    message or a WebSocket ping) for this many seconds is closed with 4000.
    """

    max_frame_bytes: int
    max_text_chars: int
    max_sync_limit: int
    frames_per_second: float
    frame_burst: int
    outbound_queue: int
    max_strikes: int
    strike_window: float
    idle_timeout: float


class Message(Struct, forbid_unknown_fields=True, gc=False):
    """A committed message as clients see it."""

    conversation_id: str
    message_id: str
    seq: int
    sender_id: str
    client_msg_id: str
    body: MessageBody
    ts: int


class Hello(Struct, tag="hello", tag_field="type"):
    """First frame on every connection."""

    protocol: int
    session_id: str
    user_id: str
    username: str
    role: str
    node: str
    server_time: int
    limits: Limits
    # additive v1 features of this hub (``PROTOCOL_FEATURES``); absent: none
    features: list[str] = []


class Sent(Struct, tag="sent", tag_field="type", omit_defaults=True, gc=False):
    """A ``send`` was committed. Never sent before the transaction committed."""

    id: str
    conversation_id: str
    client_msg_id: str
    message_id: str
    seq: int
    ts: int
    duplicate: bool = False  # true when this client_msg_id had been stored before


class MessageEvent(Struct, tag="message", tag_field="type", gc=False):
    """A message in one of my conversations (including my own, sent from another device)."""

    message: Message


class Receipt(Struct, tag="receipt", tag_field="type", omit_defaults=True, gc=False):
    """A member's read position moved. ``id`` is set when it answers my own ``read``."""

    conversation_id: str
    user_id: str
    read_seq: int
    id: str | None = None
    unread: int | None = None  # my own unread count, on receipts about me


class ConversationSync(Struct):
    conversation_id: str
    last_seq: int
    read_seq: int
    unread: int
    messages: list[Message]
    has_more: bool


class Synced(Struct, tag="synced", tag_field="type"):
    """Answer to ``sync``: missed messages per conversation, in seq order, no gaps;
    missed notices and recalls per followed official account."""

    id: str
    conversations: list[ConversationSync]
    accounts: list[AccountSync] = []


class Error(Struct, tag="error", tag_field="type", omit_defaults=True, gc=False):
    """A request failed, or a frame could not be understood. The connection stays open."""

    code: str
    message: str
    id: str | None = None
    retry_after_ms: int | None = None


class Pong(Struct, tag="pong", tag_field="type", omit_defaults=True, gc=False):
    server_time: int
    id: str | None = None


# --- official accounts -------------------------------------------------------------


class TextNotice(Struct, tag="text", tag_field="kind", forbid_unknown_fields=True, gc=False):
    """A plain-text notice."""

    text: Annotated[Text, Meta(min_length=1, max_length=MAX_TEXT_CHARS)]


# no whitespace, control or bidi control character anywhere; ``(?!\n)``: see bankhub.text
HttpsUrl = Annotated[
    str, Meta(max_length=2048, pattern=r"^(https://|bankhub://)[^\s\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]+$(?!\n)")
]


class ArticleNotice(Struct, tag="article", tag_field="kind", forbid_unknown_fields=True, gc=False):
    """A rich notice shown as a card: title, summary, body, optional image and action link.

    Links are ``https://`` or the app's own ``bankhub://`` deep links, nothing else.
    """

    title: Annotated[Line, Meta(min_length=1, max_length=120)]
    summary: Annotated[Text, Meta(max_length=500)] = ""
    body: Annotated[Text, Meta(max_length=20000)] = ""
    image_url: HttpsUrl | None = None
    action_url: HttpsUrl | None = None
    action_label: Annotated[Line, Meta(max_length=40)] | None = None


NoticeBody = TextNotice | ArticleNotice


class Notice(Struct, omit_defaults=True, gc=False):
    """A published notice of an official account, as a follower sees it.

    ``seq`` is its place in the account's event stream. A recalled notice keeps its place
    but carries no body (``recalled`` is true): followers see it withdrawn.
    """

    account_id: str
    notice_id: str
    seq: int
    ts: int
    body: NoticeBody | None = None
    recalled: bool = False
    recalled_ts: int | None = None


class NoticeEvent(Struct, tag="notice", tag_field="type", gc=False):
    """A notice was published in an account I follow, for me."""

    notice: Notice


class NoticeRecalled(Struct, tag="notice_recalled", tag_field="type", gc=False):
    """A notice I may hold was withdrawn: hide its body. ``event_seq`` is the recall's own
    place in the account stream (advance the account cursor to it)."""

    account_id: str
    notice_id: str
    seq: int
    event_seq: int
    ts: int


class AccountReceipt(Struct, tag="account_receipt", tag_field="type", omit_defaults=True, gc=False):
    """My read position in an account moved (``id`` set when it answers my ``read_notices``)."""

    account_id: str
    read_seq: int
    unread: int
    id: str | None = None


class AccountSync(Struct):
    """One followed account in ``synced``: the notices and recalls for me in
    ``(since, cursor]``. Hold ``cursor`` as the account's position; ``has_more`` means
    sync again from it."""

    account_id: str
    last_seq: int
    read_seq: int
    unread: int
    cursor: int
    notices: list[Notice]
    has_more: bool


# --- alerts ------------------------------------------------------------------------


class Alert(Struct, omit_defaults=True, gc=False):
    """A transactional alert in my inbox, rendered in my language and time zone.

    ``seq`` is its place in my inbox stream (gap-free). ``category`` is ``security``,
    ``transaction``, ``service`` or ``marketing``; ``priority`` ``high``, ``normal`` or
    ``low``; ``state`` ``unread``, ``read`` or ``archived``. ``replaces``: drop the alert
    with that id (same ``collapse_key``, now out of date). ``silent``: it arrived in my
    quiet hours, show it without sound. ``expires_at``: hide it after this time.
    """

    alert_id: str
    seq: int
    category: str
    priority: str
    template: str
    title: str
    text: str
    ts: int
    state: str = "unread"
    expires_at: int | None = None
    collapse_key: str | None = None
    replaces: str | None = None
    silent: bool = False


class AlertEvent(Struct, tag="alert", tag_field="type", gc=False):
    """A new alert in my inbox."""

    alert: Alert


class InboxSynced(Struct, tag="inbox_synced", tag_field="type"):
    """Answer to ``sync_inbox``: the alerts in ``(since, cursor]`` that are still deliverable
    (expired and replaced ones are left out), my inbox's ``last_seq`` and ``unread`` count."""

    id: str
    alerts: list[Alert]
    cursor: int
    last_seq: int
    unread: int
    has_more: bool


class InboxUpdate(Struct, tag="inbox_update", tag_field="type", omit_defaults=True, gc=False):
    """Alerts of mine changed state (``read`` or ``archived``), on this or another device.

    ``id`` is set when it answers my ``read_alerts``. ``unread`` is my inbox's unread count after it.
    """

    state: str
    unread: int
    alert_ids: list[str]
    up_to_seq: int | None = None
    id: str | None = None


# --- relationship managers and the service desk ------------------------------------


class StaffCard(Struct, gc=False):
    """A member of staff as customers see them (their RM, the agent serving them)."""

    user_id: str
    username: str
    display_name: str


class CustomerCard(Struct, omit_defaults=True, gc=False):
    """A customer's profile card, for their RM and the agent serving them.

    ``branch`` is the code of the customer's org (``org_name`` its name); ``account_class``
    is ``I``, ``II`` or ``III``; ``segment`` a targeting segment such as ``wealth``.
    """

    user_id: str
    username: str
    display_name: str
    branch: str
    org_name: str
    segment: str | None = None
    account_class: str | None = None
    tags: list[str] = []
    rm: StaffCard | None = None


class RmChanged(Struct, tag="rm_changed", tag_field="type", omit_defaults=True, gc=False):
    """My relationship manager changed (a handover). ``conversation_id``: my direct
    conversation, which passed to the new RM with its history (None if I had none)."""

    rm: StaffCard
    conversation_id: str | None = None
    previous_rm_id: str | None = None


class ConversationAdded(Struct, tag="conversation_added", tag_field="type", gc=False):
    """A conversation was given to me: a customer handed over to me (``reason`` ``handover``)
    or a service session routed or transferred to me (``service``). Its history is readable."""

    conversation_id: str
    kind: str
    reason: str


class ConversationRemoved(Struct, tag="conversation_removed", tag_field="type", gc=False):
    """I lost a conversation: ``handover`` (the customer now has another RM), ``transferred``
    or ``closed`` (a service session). Nothing more of it reaches me; history, sync and send
    answer ``not_found`` from now on."""

    conversation_id: str
    reason: str


class ServiceStatus(Struct, tag="service_status", tag_field="type", omit_defaults=True, gc=False):
    """My service session changed (customers): its ``state`` (``bot``, ``waiting``,
    ``active``, ``closed``) and, while waiting, my ``position`` in the queue (1 = next),
    how many wait in all and the estimated wait in seconds (None: no estimate).

    ``revision`` grows with every change of the status's queue, so it compares only within
    one session and queue (``closed``, and ``active`` after a transfer to an agent, carry 0):
    ignore a ``waiting``/``active`` status whose nonzero revision is lower than one already
    shown for the same session and queue; ``closed`` is final. ``csat_pending``: a closed
    session I may rate.
    """

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


class ServiceNote(Struct, omit_defaults=True, gc=False):
    """A note on a service session, for agents and supervisors only.

    ``unreadable`` is set when the text cannot be shown (``text`` is then empty):
    ``shredded`` (the conversation was erased) or ``undecryptable`` (the stored text failed
    its integrity check).
    """

    author_id: str
    kind: str
    text: str
    ts: int
    to_queue: str | None = None
    to_agent_id: str | None = None
    unreadable: str | None = None


class ServiceAssigned(Struct, tag="service_assigned", tag_field="type", gc=False):
    """A customer was routed (``via`` ``queue``) or transferred (``transfer``) to me (agents).

    I am now a member of ``conversation_id``; the session's messages start after
    ``start_seq``. ``notes`` carry transfer notes (never shown to the customer).
    """

    session_id: str
    conversation_id: str
    queue: str
    via: str
    start_seq: int
    customer: CustomerCard
    notes: list[ServiceNote]


class AgentState(Struct, tag="agent_state", tag_field="type", gc=False):
    """My state on the service desk changed (agents): ``available``, ``busy`` or ``away``;
    ``active`` conversations out of ``capacity``."""

    state: str
    capacity: int
    active: int


ServerFrame = (
    Hello
    | Sent
    | MessageEvent
    | Receipt
    | Synced
    | Error
    | Pong
    | NoticeEvent
    | NoticeRecalled
    | AccountReceipt
    | AlertEvent
    | InboxSynced
    | InboxUpdate
    | RmChanged
    | ConversationAdded
    | ConversationRemoved
    | ServiceStatus
    | ServiceAssigned
    | AgentState
)

_encoder = msgspec.json.Encoder()


def encode(frame: ServerFrame | ClientFrame) -> bytes:
    """Serialise a frame to its JSON wire form."""
    return _encoder.encode(frame)

