"""Protocol v1 frames: the typed shape of every JSON frame on ``/v1/ws``.

Every frame is a JSON object with a ``type``. Client frames that expect an answer
carry an ``id`` (a client-chosen string); the answer echoes it. The JSON Schema in
``schema/protocol.v1.json`` is generated from these classes (``bankhub schema``) and a
test keeps the two identical, so this module is the single source of the wire format.
``docs/protocol.md`` is the prose specification.

Timestamps are integers: milliseconds since the Unix epoch, UTC.
"""

from __future__ import annotations

from typing import Annotated, Literal

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
    "ImageBody",
    "VoiceBody",
    "MediaId",
    "Signature",
    "CardField",
    "CardAction",
    "CardBody",
    "SignedCardBody",
    "AccountClass",
    "MAX_CARD_FIELDS",
    "MAX_CARD_ACTIONS",
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
    "DlpNotice",
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
    "UserId",
    "Typing",
    "WatchPresence",
    "TypingEvent",
    "PresenceInfo",
    "PresenceEvent",
    "PresenceList",
    "ContactUser",
    "ContactEvent",
    "RecalledBody",
    "EditBody",
    "RecallBody",
    "Edit",
    "Recall",
]

PROTOCOL_VERSION = 1
# Additive v1 features this hub speaks, listed in ``hello.features`` so a client can use
# them without guessing (a hub from before a feature refuses its fields as
# ``invalid_frame``). ``sync.listed_only``: ``sync`` may answer only the conversations it
# lists (a gap fill, or a resume split over several frames).
PROTOCOL_FEATURES = ("sync.listed_only", "edit", "contacts", "typing", "presence", "receipts.privacy", "cards", "groups.admin", "media", "dlp")
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
    MEDIA_NOT_READY = "media_not_ready"  # the media item is still being scanned: send it once it is ready
    MEDIA_REJECTED = "media_rejected"  # the scanner refused the media item: it can never be sent
    SENSITIVE_DATA = "sensitive_data"  # data-loss prevention refused the text (a card number, a code...): nothing was stored


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


class RecalledBody(Struct, tag="recalled", tag_field="kind", forbid_unknown_fields=True):
    """Sent by the server only: the sender withdrew this message (``recall``).

    The message keeps its place (ids, seq, sender, time); its text is gone from every
    member's view (the original is kept for compliance only).
    """


class EditBody(Struct, tag="edit", tag_field="kind", forbid_unknown_fields=True, gc=False):
    """Sent by the server only (feature ``edit``): message ``message_id`` of this
    conversation was edited by its sender. ``body`` is that message's current body — the
    new text, or ``recalled`` once it was withdrawn later (an older edit never shows a
    text its sender replaced). Apply it to the target; never show it as a message."""

    message_id: str
    body: TextBody | RecalledBody


class RecallBody(Struct, tag="recall", tag_field="kind", forbid_unknown_fields=True, gc=False):
    """Sent by the server only (feature ``edit``): message ``message_id`` of this
    conversation was withdrawn by its sender. Show the target as withdrawn; never show
    this as a message."""

    message_id: str


class Signature(Struct, forbid_unknown_fields=True, gc=False):
    """The hub's Ed25519 signature of a card or a notice (feature ``cards``): ``key_id`` names
    a key of ``GET /v1/signing-keys``, ``sig`` is the 64-byte signature, unpadded base64url,
    over the canonical payload of docs/protocol.md ("Verified cards")."""

    key_id: str
    sig: str


# card links (at most 2048 characters): the authority a plain lowercase DNS name — no userinfo,
# port, percent-escape or backslash (a browser reads it as "/", so "https://evil.example\.bank.com"
# opens evil.example); after it no backslash, whitespace, control or bidi control character (see
# bankhub.text). The hub then checks the exact host against BANKHUB_CARD_DOMAINS
# (bankhub.protocol.cards.link_allowed), which also refuses what a pattern cannot say (empty
# labels, a trailing dot, a numeric host).
_URL_HOST = r"[a-z0-9.-]+(?:[/?#][^\s\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\\]*)?$(?!\n)"
CardLink = Annotated[str, Meta(max_length=2048, pattern=r"^(https|bankhub)://" + _URL_HOST)]
CardImageUrl = Annotated[str, Meta(max_length=2048, pattern=r"^https://" + _URL_HOST)]
AccountClass = Literal["I", "II", "III"]
MAX_CARD_FIELDS = 8
MAX_CARD_ACTIONS = 3


class CardField(Struct, forbid_unknown_fields=True, gc=False):
    """One line of a card: a label and its value (e.g. "Amount due" / "¥1,280.00")."""

    label: Annotated[Line, Meta(min_length=1, max_length=40)]
    value: Annotated[Line, Meta(min_length=1, max_length=200)]


class CardAction(Struct, forbid_unknown_fields=True, gc=False):
    """A card's button: a ``bankhub://`` deep link, or ``https://`` to an allow-listed domain."""

    label: Annotated[Line, Meta(min_length=1, max_length=40)]
    url: CardLink


class CardBody(Struct, tag="card", tag_field="kind", omit_defaults=True, forbid_unknown_fields=True, gc=False):
    """A service card (feature ``cards``): a product ``offer``, a ``bill_reminder`` or an
    ``appointment``. Staff (RMs, service-desk agents) and bank systems only; a customer's
    card is refused ``forbidden``. ``image_url`` and ``https://`` action links must be on a
    domain of ``BANKHUB_CARD_DOMAINS``. ``classes``: the account classes that may act on it
    (empty: every class); other customers see its actions disabled.

    The hub signs it at commit: the stored and delivered body is a :class:`SignedCardBody`.
    A client never sends ``signature`` (``invalid_frame``).
    """

    template: Literal["offer", "bill_reminder", "appointment"]
    title: Annotated[Line, Meta(min_length=1, max_length=120)]
    fields: Annotated[list[CardField], Meta(max_length=MAX_CARD_FIELDS)] = []
    image_url: CardImageUrl | None = None
    actions: Annotated[list[CardAction], Meta(max_length=MAX_CARD_ACTIONS)] = []
    classes: Annotated[list[AccountClass], Meta(max_length=3)] = []


class SignedCardBody(CardBody, tag="card", tag_field="kind", omit_defaults=True, forbid_unknown_fields=True, gc=False):
    """Sent by the server only: a card as stored and delivered, with the hub's ``signature``
    over it and its place (conversation, message id, sender, time). A card whose signature
    does not verify is shown unverified."""

    signature: Signature | None = None


MediaId = Annotated[Line, Meta(min_length=1, max_length=64, description="A media id (POST /v1/conversations/{id}/media)")]
Waveform = Annotated[list[Annotated[int, Meta(ge=0, le=100)]], Meta(max_length=64)]


# filled in by the hub from the stored item; a client's value is replaced (so only its shape is checked)
MediaType = Annotated[str, Meta(max_length=64, pattern=r"^[a-z]+/[a-z0-9.+-]+$(?!\n)")]


class ImageBody(Struct, tag="image", tag_field="kind", omit_defaults=True, forbid_unknown_fields=True, gc=False):
    """A picture: ``media_id`` of one I uploaded into this conversation (HTTP), and a caption.

    A client sends ``media_id`` and optionally ``caption``. The hub checks the item is mine,
    of this conversation and ``ready``, and stores the body with ``content_type``, ``width``
    and ``height`` (of the upright picture) filled in from it (values a client sends for them
    are replaced). Get its URLs with ``GET /v1/media/{media_id}``.
    """

    media_id: MediaId
    caption: Annotated[Text, Meta(max_length=1000)] | None = None
    content_type: MediaType | None = None
    width: Annotated[int, Meta(ge=1)] | None = None
    height: Annotated[int, Meta(ge=1)] | None = None


class VoiceBody(Struct, tag="voice", tag_field="kind", omit_defaults=True, forbid_unknown_fields=True, gc=False):
    """A voice note: ``media_id`` of one I uploaded into this conversation (HTTP).

    As for ``image``, the hub fills in ``content_type``, ``duration_ms`` and ``waveform`` (at
    most 64 values 0..100 summarising loudness over time) from the item.
    """

    media_id: MediaId
    content_type: MediaType | None = None
    duration_ms: Annotated[int, Meta(ge=0)] | None = None
    waveform: Waveform | None = None


Body = TextBody | CardBody | ImageBody | VoiceBody
"""What a client may send."""

MessageBody = (
    TextBody | SystemBody | ShreddedBody | UndecryptableBody | EditBody | RecallBody | RecalledBody | SignedCardBody | ImageBody | VoiceBody
)
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


MessageId = Annotated[Line, Meta(min_length=1, max_length=64, description="A message id")]


class Edit(Struct, tag="edit", tag_field="type", forbid_unknown_fields=True):
    """Replace the text of my own text message ``message_id`` (feature ``edit``), within
    the edit window. Stored as an ``edit`` message in the conversation's seq stream;
    idempotent by ``client_msg_id`` like ``send``. Answered by ``sent`` (the edit message)
    or ``error``."""

    id: FrameId
    conversation_id: ConversationId
    message_id: MessageId
    client_msg_id: ClientMsgId
    body: TextBody


class Recall(Struct, tag="recall", tag_field="type", forbid_unknown_fields=True):
    """Withdraw my own text message ``message_id`` (feature ``edit``), within the recall
    window. Stored as a ``recall`` message in the conversation's seq stream. Answered by
    ``sent`` (the recall message; ``duplicate`` when it was withdrawn before) or ``error``."""

    id: FrameId
    conversation_id: ConversationId
    message_id: MessageId


# --- typing and presence (live only, never stored) ----------------------------------

UserId = Annotated[Line, Meta(min_length=1, max_length=64, description="A user id")]


class Typing(Struct, tag="typing", tag_field="type", forbid_unknown_fields=True, gc=False):
    """I am typing (``active`` true) or stopped (false) in a conversation (feature ``typing``).

    Never stored and never answered when accepted. The hub forwards it to the other
    members as ``typing`` at most once per ``typing_interval`` per member and conversation
    (repeats in between are dropped), and not at all in conversations of more than
    ``typing_max_members`` members. Send ``active`` true again every few seconds while
    typing: receivers clear an indicator not refreshed within its ``ttl_ms``. A refusal
    (not a member: ``not_found``; too many typing states: ``rate_limited``) is answered by
    ``error``, carrying ``id`` if one was given.
    """

    conversation_id: ConversationId
    active: bool
    id: FrameId | None = None


class WatchPresence(Struct, tag="watch_presence", tag_field="type", forbid_unknown_fields=True):
    """Ask whether these users are online and follow them (feature ``presence``).

    Replaces what this connection watched before (an empty list stops watching).
    Answered by ``presence_list``: related users (accepted contacts, my RM, my customers;
    no block either way) with ``online`` and, if their setting lets me, ``last_seen``;
    anyone else with ``online`` null (unknown, the same as hidden). Afterwards each change
    of a watched related user arrives as ``presence``. At most ``presence_max_watch`` ids.
    """

    id: FrameId
    user_ids: Annotated[list[UserId], Meta(max_length=1000)]


ClientFrame = Send | Read | Sync | Ping | ReadNotices | SyncInbox | ReadAlerts | Edit | Recall | Typing | WatchPresence


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


class Message(Struct, forbid_unknown_fields=True, omit_defaults=True, gc=False):
    """A committed message as clients see it. ``edited_ts``: when its sender last edited
    it (absent: never edited); ``body`` is then the current text."""

    conversation_id: str
    message_id: str
    seq: int
    sender_id: str
    client_msg_id: str
    body: MessageBody
    ts: int
    edited_ts: int | None = None


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


class DlpNotice(Struct, forbid_unknown_fields=True, gc=False):
    """One value data-loss prevention masked in what I sent (docs/compliance.md): its ``kind``
    (``card``, ``resident_id``, ``bank_account``, ``cvv``, ``otp``) and the mask that replaced it."""

    kind: str
    masked: str


class Sent(Struct, tag="sent", tag_field="type", omit_defaults=True, gc=False):
    """A ``send`` was committed. Never sent before the transaction committed."""

    id: str
    conversation_id: str
    client_msg_id: str
    message_id: str
    seq: int
    ts: int
    duplicate: bool = False  # true when this client_msg_id had been stored before
    # the body as stored, when the hub made it differ from what was sent: a card carries the
    # hub's signature (feature ``cards``); hold this body for the message, not your own copy
    body: MessageBody | None = None
    # data-loss prevention masked values in it (feature ``dlp``): ``body`` is then the masked body
    # others see; show the sender why (never send card numbers, CVVs or codes in chat)
    dlp: list[DlpNotice] = []


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
# no backslash either: a browser reads ``https://a.example\b.bank.com/`` as host a.example
HttpsUrl = Annotated[
    str, Meta(max_length=2048, pattern=r"^(https://|bankhub://)[^\s\\\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]+$(?!\n)")
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
    # the hub's signature over the account id, notice id and body (feature ``cards``); absent
    # on a recalled notice and on notices published before signing existed
    signature: Signature | None = None


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
    """A conversation was given to me: a customer handed over to me (``reason`` ``handover``),
    a service session routed or transferred to me (``service``), a group made with me in it
    (``group_created``), an invitation into a group (``group_invited``), or an org group I
    belong to by my place in the org tree (``group_org``). Its history is readable."""

    conversation_id: str
    kind: str
    reason: str


class ConversationRemoved(Struct, tag="conversation_removed", tag_field="type", gc=False):
    """I lost a conversation: ``handover`` (the customer now has another RM), ``transferred``
    or ``closed`` (a service session), ``group_removed`` (removed from a group by its owner
    or an admin), ``group_left`` (I left it, on another device too) or ``group_org`` (an org
    group I no longer belong to by the org tree). Nothing more of it reaches me; history,
    sync and send answer ``not_found`` from now on."""

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


class ContactUser(Struct, gc=False):
    """Another user as my contact list shows them."""

    id: str
    username: str
    display_name: str


class ContactEvent(Struct, tag="contact", tag_field="type", omit_defaults=True, gc=False):
    """My contacts changed (feature ``contacts``), on every device of mine. ``event``:
    ``request`` (``user`` asks to become my contact: ``request_id`` to accept or decline),
    ``request_withdrawn`` (they withdrew it), ``accepted`` (``user`` and I are now
    contacts: they accepted my request, I accepted theirs on another device, or an invite
    code was redeemed), ``declined`` (I declined ``request_id`` on another device; a
    requester is never told), ``removed`` (we are no longer contacts), ``blocked`` and
    ``unblocked`` (I blocked or unblocked ``user`` on another device)."""

    event: str
    user: ContactUser
    request_id: str | None = None


# --- typing and presence (server frames) -------------------------------------------


class TypingEvent(Struct, tag="typing", tag_field="type", gc=False):
    """Member ``user_id`` is typing (``active``) or stopped in a conversation of mine.

    Clear the indicator after ``ttl_ms`` without a refresh (a lost "stopped" clears)."""

    conversation_id: str
    user_id: str
    active: bool
    ttl_ms: int


class PresenceInfo(Struct, omit_defaults=True, gc=False):
    """One user's presence as I may see it. ``online`` null: unknown (not related to me,
    blocked, or no such user: all answered alike). ``last_seen``: when their last
    connection closed (ms), only while offline and if their setting shows it to me."""

    user_id: str
    online: bool | None = None
    last_seen: int | None = None


class PresenceEvent(Struct, tag="presence", tag_field="type", omit_defaults=True, gc=False):
    """A user I watch (``watch_presence``) came online or went offline."""

    user_id: str
    online: bool
    last_seen: int | None = None


class PresenceList(Struct, tag="presence_list", tag_field="type", gc=False):
    """Answer to ``watch_presence``: one entry per asked id, in the order asked."""

    id: str
    users: list[PresenceInfo]


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
    | ContactEvent
    | TypingEvent
    | PresenceEvent
    | PresenceList
)

_encoder = msgspec.json.Encoder()


def encode(frame: ServerFrame | ClientFrame) -> bytes:
    """Serialise a frame to its JSON wire form."""
    return _encoder.encode(frame)

