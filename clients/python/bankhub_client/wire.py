"""Protocol v1 wire frames as the SDK sees them, and their encoding. No I/O.

Client frames are encoded exactly as the hub expects. Server frames are decoded
leniently: extra fields are ignored, a frame of an unknown ``type`` decodes to None
(a newer server may add frame types), and a body of an unknown ``kind`` becomes an
:class:`~bankhub_client.models.UnknownBody` instead of failing the whole frame.

These types are the SDK's own (it never imports the server package), declared by hand
against ``schema/protocol.v1.json``, the schema generated from the hub's frames:
``tests/unit/test_sdk_schema.py`` compares them with it field by field (name, type,
required or not, default, tag) and fails on any difference not listed there with its
reason. :data:`ServerFrame` covers every frame type the hub sends, the service-desk
events of :mod:`bankhub_client.desk` included.
"""

from __future__ import annotations

from typing import Any, get_args

import msgspec
from msgspec import Struct

from .contacts import ContactEvent
from .alerts import AlertFrame, InboxSyncedFrame, InboxUpdateFrame, ReadAlertsFrame, SyncInboxFrame
from .desk import (
    DESK_EVENT_TYPES,
    AgentState,
    ConversationAdded,
    ConversationRemoved,
    DeskEvent,
    RmChanged,
    ServiceAssigned,
    ServiceStatus,
    SystemBody,
)
from .liveness import PresenceEvent, PresenceListFrame, TypingEvent, TypingFrame, WatchPresenceFrame
from .revise import REVISION_KINDS, EditFrame, RecallFrame, decode_revision_body
from .cards import NewCard, Signature, decode_card
from .media import ImageBody, VoiceBody, decode_media_body
from .models import (
    Account,
    AccountReceipt,
    ArticleBody,
    Body,
    Conversation,
    FollowedAccount,
    Hello,
    Message,
    Notice,
    NoticeBody,
    NoticeRecalled,
    NoticeRecord,
    NoticeRecordOf,
    NoticeStats,
    Receipt,
    TextBody,
    UnknownBody,
)

__all__ = [
    "PROTOCOL_VERSION",
    "SUBPROTOCOL",
    "SendFrame",
    "ReadFrame",
    "SyncFrame",
    "PingFrame",
    "ClientFrame",
    "WireMessage",
    "HelloFrame",
    "SentFrame",
    "MessageFrame",
    "ReceiptFrame",
    "WireConversationSync",
    "SyncedFrame",
    "ErrorFrame",
    "PongFrame",
    "ServerFrame",
    "encode",
    "decode_server_frame",
    "decode_desk_event",
    "decode_body",
    "to_message",
    "to_hello",
    "to_receipt",
    "Problem",
    "ConversationList",
    "ConversationEnvelope",
    "WireHistory",
    "ReadNoticesFrame",
    "WireNotice",
    "NoticeFrame",
    "NoticeRecalledFrame",
    "AccountReceiptFrame",
    "WireAccountSync",
    "decode_notice_body",
    "to_notice",
    "to_notice_recalled",
    "to_account_receipt",
    "AccountList",
    "FollowedList",
    "WireNoticePage",
    "WireNoticeRecord",
    "WireNoticeList",
    "WireStats",
    "AccountRead",
    "to_notice_record",
]

PROTOCOL_VERSION = 1
SUBPROTOCOL = "bankhub.v1"


# --- client frames ----------------------------------------------------------------


class SendFrame(Struct, tag="send", tag_field="type"):
    id: str
    conversation_id: str
    client_msg_id: str
    body: TextBody | ImageBody | VoiceBody | NewCard


class ReadFrame(Struct, tag="read", tag_field="type"):
    id: str
    conversation_id: str
    seq: int


class SyncFrame(Struct, tag="sync", tag_field="type", omit_defaults=True):
    id: str
    since: dict[str, int]
    limit: int
    accounts: dict[str, int] = {}  # official accounts: the last account event seq held
    listed_only: bool = False  # feature sync.listed_only: answer the listed conversations only


class PingFrame(Struct, tag="ping", tag_field="type"):
    id: str


class ReadNoticesFrame(Struct, tag="read_notices", tag_field="type"):
    id: str
    account_id: str
    seq: int


ClientFrame = SendFrame | ReadFrame | SyncFrame | PingFrame | ReadNoticesFrame | SyncInboxFrame | ReadAlertsFrame | EditFrame | RecallFrame | TypingFrame | WatchPresenceFrame

_encoder = msgspec.json.Encoder()


def encode(frame: ClientFrame) -> bytes:
    """The JSON wire form of a client frame."""
    return _encoder.encode(frame)


# --- server frames ----------------------------------------------------------------


class WireMessage(Struct):
    conversation_id: str
    message_id: str
    seq: int
    sender_id: str
    client_msg_id: str
    body: msgspec.Raw
    ts: int
    edited_ts: int | None = None


class HelloFrame(Hello, frozen=True, tag="hello", tag_field="type"):
    """``hello``: the fields of :class:`~bankhub_client.models.Hello`, tagged."""


class WireDlp(Struct):
    kind: str
    masked: str


class SentFrame(Struct, tag="sent", tag_field="type"):
    id: str
    conversation_id: str
    client_msg_id: str
    message_id: str
    seq: int
    ts: int
    duplicate: bool = False
    body: msgspec.Raw = msgspec.Raw(b"null")  # the stored body when the hub changed it (a card: signed; a masked text)
    dlp: list[WireDlp] = []  # values data-loss prevention masked (feature dlp)


class MessageFrame(Struct, tag="message", tag_field="type"):
    message: WireMessage


class ReceiptFrame(Struct, tag="receipt", tag_field="type"):
    conversation_id: str
    user_id: str
    read_seq: int
    id: str | None = None
    unread: int | None = None


class WireConversationSync(Struct):
    conversation_id: str
    last_seq: int
    read_seq: int
    unread: int
    messages: list[WireMessage]
    has_more: bool


_NULL = msgspec.Raw(b"null")


class WireNotice(Struct):
    account_id: str
    notice_id: str
    seq: int
    ts: int
    body: msgspec.Raw = _NULL  # absent (or null) on a recalled notice
    recalled: bool = False
    recalled_ts: int | None = None
    signature: Signature | None = None


class WireAccountSync(Struct):
    account_id: str
    last_seq: int
    read_seq: int
    unread: int
    cursor: int
    notices: list[WireNotice]
    has_more: bool


class SyncedFrame(Struct, tag="synced", tag_field="type"):
    id: str
    conversations: list[WireConversationSync]
    accounts: list[WireAccountSync] = []


class ErrorFrame(Struct, tag="error", tag_field="type"):
    code: str
    message: str
    id: str | None = None
    retry_after_ms: int | None = None


class PongFrame(Struct, tag="pong", tag_field="type"):
    server_time: int
    id: str | None = None


class NoticeFrame(Struct, tag="notice", tag_field="type"):
    notice: WireNotice


class NoticeRecalledFrame(Struct, tag="notice_recalled", tag_field="type"):
    account_id: str
    notice_id: str
    seq: int
    event_seq: int
    ts: int


class AccountReceiptFrame(Struct, tag="account_receipt", tag_field="type"):
    account_id: str
    read_seq: int
    unread: int
    id: str | None = None


ServerFrame = (
    HelloFrame
    | SentFrame
    | MessageFrame
    | ReceiptFrame
    | SyncedFrame
    | ErrorFrame
    | PongFrame
    | NoticeFrame
    | NoticeRecalledFrame
    | AccountReceiptFrame
    | AlertFrame
    | InboxSyncedFrame
    | InboxUpdateFrame
    | DeskEvent
    | TypingEvent
    | PresenceEvent
    | PresenceListFrame
    | ContactEvent
)
"""Every frame type the hub sends (the schema's ``server_frame``)."""

_SERVER_TYPES = frozenset(cls.__struct_config__.tag for cls in get_args(ServerFrame))
_frame_decoder: msgspec.json.Decoder[ServerFrame] = msgspec.json.Decoder(ServerFrame)


class _TypeOnly(Struct):
    type: Any = None


_type_decoder = msgspec.json.Decoder(_TypeOnly)


def decode_server_frame(data: str | bytes) -> ServerFrame | None:
    """Decode one server frame. None for a frame ``type`` this SDK does not know.

    Raises ``msgspec.DecodeError`` (a subclass of ``ValueError``) for invalid JSON or a
    known frame type with missing or ill-typed fields.
    """
    try:
        return _frame_decoder.decode(data)
    except msgspec.ValidationError:
        peek = _type_decoder.decode(data)  # raises DecodeError itself if not an object
        if isinstance(peek.type, str) and peek.type not in _SERVER_TYPES:
            return None
        raise


def decode_desk_event(data: str | bytes) -> DeskEvent | None:
    """One of the RM and service-desk events (:data:`~bankhub_client.desk.DeskEvent`), or
    None for a frame of another type (or no JSON object). Raises ``msgspec.DecodeError``
    for a desk event with missing or ill-typed fields."""
    try:
        kind = _type_decoder.decode(data).type
    except msgspec.DecodeError:
        return None
    if kind not in DESK_EVENT_TYPES:
        return None
    frame = _frame_decoder.decode(data)
    assert isinstance(frame, (RmChanged, ConversationAdded, ConversationRemoved, ServiceStatus, ServiceAssigned, AgentState))
    return frame


def decode_body(raw: bytes | msgspec.Raw) -> Body:
    """Decode a message body: a :class:`TextBody`, a :class:`SystemBody` (the bank
    speaking), else an :class:`UnknownBody`."""
    obj = msgspec.json.decode(raw)
    if not isinstance(obj, dict):
        raise msgspec.ValidationError("message body must be a JSON object")
    kind = obj.get("kind")
    if kind == "text" and isinstance(obj.get("text"), str):
        return TextBody(text=obj["text"])
    if kind == "system" and isinstance(obj.get("event"), str) and isinstance(obj.get("text"), str):
        data = obj.get("data", {})
        if isinstance(data, dict) and all(isinstance(v, str) for v in data.values()):
            return SystemBody(event=obj["event"], text=obj["text"], data=data)
    if kind == "card" and (card := decode_card(obj)) is not None:
        return card  # a service card, signed by the hub (bankhub_client.cards)
    if kind in REVISION_KINDS and (revision := decode_revision_body(obj)) is not None:
        return revision  # recall and edit (feature edit)
    if kind in ("image", "voice") and (media := decode_media_body(obj)) is not None:
        return media  # pictures and voice notes (feature media)
    return UnknownBody(kind=kind if isinstance(kind, str) else "", data=obj)


def decode_notice_body(raw: bytes | msgspec.Raw) -> NoticeBody | None:
    """Decode a notice body: :class:`TextBody`, :class:`ArticleBody`, None (JSON null:
    a recalled notice), else :class:`UnknownBody` (a kind this SDK does not know, or an
    article with fields it does not understand)."""
    obj = msgspec.json.decode(raw)
    if obj is None:
        return None
    if not isinstance(obj, dict):
        raise msgspec.ValidationError("notice body must be a JSON object")
    if obj.get("kind") == "article":
        try:
            return msgspec.convert(obj, ArticleBody)
        except msgspec.ValidationError:
            return UnknownBody(kind="article", data=obj)
    body = decode_body(raw)
    if isinstance(body, (TextBody, UnknownBody)):
        return body
    # system, edit and recall bodies are for messages
    kind = obj.get("kind")
    return UnknownBody(kind=kind if isinstance(kind, str) else "", data=obj)


def to_notice(w: WireNotice) -> Notice:
    return Notice(
        account_id=w.account_id,
        notice_id=w.notice_id,
        seq=w.seq,
        ts=w.ts,
        body=decode_notice_body(w.body),
        recalled=w.recalled,
        recalled_ts=w.recalled_ts,
        signature=None if w.recalled else w.signature,
        body_data=_json_object(w.body),
    )


def _json_object(raw: msgspec.Raw) -> dict[str, Any] | None:
    obj = msgspec.json.decode(raw)
    return obj if isinstance(obj, dict) else None


def to_notice_recalled(r: NoticeRecalledFrame) -> NoticeRecalled:
    return NoticeRecalled(account_id=r.account_id, notice_id=r.notice_id, seq=r.seq, ts=r.ts, event_seq=r.event_seq)


def to_account_receipt(r: AccountReceiptFrame) -> AccountReceipt:
    return AccountReceipt(account_id=r.account_id, read_seq=r.read_seq, unread=r.unread, id=r.id)


def to_message(w: WireMessage) -> Message:
    return Message(
        conversation_id=w.conversation_id,
        message_id=w.message_id,
        seq=w.seq,
        sender_id=w.sender_id,
        client_msg_id=w.client_msg_id,
        body=decode_body(w.body),
        ts=w.ts,
        edited_ts=w.edited_ts,
    )


def to_hello(h: HelloFrame) -> Hello:
    return Hello(**msgspec.structs.asdict(h))


def to_receipt(r: ReceiptFrame) -> Receipt:
    return Receipt(conversation_id=r.conversation_id, user_id=r.user_id, read_seq=r.read_seq, unread=r.unread, id=r.id)


# --- HTTP bodies ------------------------------------------------------------------


class Problem(Struct):
    """An ``application/problem+json`` error body (every field optional on decode)."""

    type: str | None = None
    title: str | None = None
    status: int | None = None
    code: str | None = None
    detail: str | None = None


class ConversationList(Struct):
    conversations: list[Conversation]
    next_cursor: str | None = None


class ConversationEnvelope(Struct):
    conversation: Conversation


class WireHistory(Struct):
    messages: list[WireMessage]
    has_more: bool = False


class AccountList(Struct):
    accounts: list[Account]
    next_cursor: str | None = None


class FollowedList(Struct):
    accounts: list[FollowedAccount]
    next_cursor: str | None = None


class WireNoticePage(Struct):
    notices: list[WireNotice]
    has_more: bool = False


WireNoticeRecord = NoticeRecordOf[msgspec.Raw]
"""A notice record with its body not decoded yet (see :func:`to_notice_record`)."""


class WireNoticeList(Struct):
    notices: list[WireNoticeRecord]


class WireStats(Struct):
    notice: WireNoticeRecord
    stats: NoticeStats


class AccountRead(Struct):
    account_id: str
    read_seq: int
    unread: int


def to_notice_record(w: WireNoticeRecord) -> NoticeRecord:
    """The SDK's view of an administrator's notice (its body decoded leniently)."""
    fields = msgspec.structs.asdict(w)
    body = decode_notice_body(w.body)
    if body is None:
        raise msgspec.ValidationError("a notice record must carry its body")
    fields["body"] = body
    return NoticeRecord(**fields)
