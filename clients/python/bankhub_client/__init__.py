"""Python SDK for the bankhub instant-messaging hub (protocol v1).

Quick start::

    from bankhub_client import Client, Message, login

    session = await login("https://hub.example", "alice", "secret")
    async with Client.connect("https://hub.example", token=session.token) as c:
        conv = await c.open_direct("bob")
        sent = await c.send(conv, "hello")          # committed: sent.seq, sent.message_id
        async for event in c.events():
            if isinstance(event, Message):
                print(event.sender_id, event.text)

* :func:`login` / :class:`Api` — the HTTP API (sessions, conversations, history,
  official accounts: follow, notices, and for administrators publish/approve/recall).
* :class:`Client` — the WebSocket connection: exactly-once, in-order delivery of
  messages and official-account notices with automatic reconnect, sync and resend;
  :class:`ClientOptions` says how it connects (resume cursors, reconnects, timeouts).
* :mod:`bankhub_client.state` and :mod:`bankhub_client.notices` — the pure bookkeeping
  behind it (cursors, pending sends, backoff, URL derivation; notice cursors).
* Relationship managers and the service desk: :mod:`bankhub_client.desk` — events such
  as :class:`ServiceStatus` (queue position, estimated wait) and :class:`ServiceAssigned`,
  :class:`SystemBody` messages (bot, notices, auto-replies) and the HTTP methods on
  :class:`Api` (``open_service``, ``ask_for_agent``, ``close_session``, ``book``, ...).
* Transactional alerts: :class:`Alert` events and the inbox (:meth:`Api.inbox`,
  :meth:`Client.read_alerts`, preferences); :class:`SystemClient` for an internal system
  that sends alerts, signing each request (:mod:`bankhub_client.signing`).
* Typing, presence and read positions: :mod:`bankhub_client.liveness` —
  :meth:`Client.typing` with the debounced :class:`TypingSender`, :class:`TypingBoard`,
  :meth:`Client.watch_presence` and :class:`PresenceEvent`, :meth:`Api.privacy`,
  :meth:`Api.read_positions`.
* Contacts: :mod:`bankhub_client.contacts` — :class:`ContactEvent` events and the HTTP
  methods on :class:`Api` (``contacts``, ``request_contact``, ``accept_request``, ``block``,
  ``create_invite``, ``redeem_invite``, ...).
* Verified service cards and signed notices: :mod:`bankhub_client.cards` — :class:`CardBody`
  messages, :meth:`Client.verified` (sets ``body.verified``), :meth:`Client.verify_notice`,
  and :func:`verify_card` / :func:`verify_notice` with the keys of ``/v1/signing-keys``.
* Pictures and voice: :mod:`bankhub_client.media` — :meth:`Api.upload_media`,
  :meth:`Api.media_info`, :meth:`Api.download_media`, :meth:`Client.send_media`, and
  :class:`ImageBody` / :class:`VoiceBody` messages.
* The embeddable service widget: :func:`bankhub_client.widget.mint_visitor_token`, for a
  partner's backend that signs its visitors' tokens, and
  :func:`bankhub_client.widget.open_visitor_session`, which exchanges one for a visitor session.

The SDK does not depend on the server package; it mirrors the wire format itself.
"""

from ._version import __version__
from .alerts import Alert, AlertPreferences, InboxCounts, InboxPage, InboxUpdate, Notification, SentCard, SystemClient
from .api import Api, login
from .client import Client
from .cards import CardAction, CardBody, CardField, NewCard, Signature, card_actions_allowed, parse_signing_keys, verify_card, verify_notice
from .groups import GROUP_EVENTS, Group, GroupMember
from .desk import (
    AgentDesk,
    AgentFigures,
    AgentState,
    Book,
    BookEntry,
    BookMessage,
    ConversationAdded,
    ConversationRemoved,
    CustomerCard,
    CustomerCardView,
    DeskFigures,
    Handover,
    MyRm,
    QueueFigures,
    RmAvailability,
    RmChanged,
    ServiceAssigned,
    ServiceNote,
    ServiceQueue,
    ServiceSession,
    ServiceSessionDetail,
    ServiceStatus,
    StaffCard,
    SystemBody,
)
from .errors import (
    ApiError,
    AuthError,
    BankhubError,
    ClientClosed,
    ConnectionLost,
    ProtocolError,
    SendTimeout,
)
from .models import (
    Account,
    AccountReceipt,
    ArticleBody,
    Body,
    Conversation,
    Disconnected,
    Event,
    FollowedAccount,
    Hello,
    History,
    Limits,
    Me,
    Message,
    Notice,
    NoticeBody,
    NoticePage,
    NoticeRecalled,
    NoticeRecord,
    NoticeStats,
    Receipt,
    Reconnected,
    ResolvedTarget,
    Session,
    Target,
    TextBody,
    UnknownBody,
    User,
    WsTicket,
)
from .options import ClientOptions
from .models import DlpNotice, EditBody, RecallBody, RecalledBody
from .revise import MessageLog
from .liveness import PresenceEvent, PresenceInfo, Privacy, ReadPosition, TypingBoard, TypingEvent, TypingSender
from .contacts import Contact, ContactEvent, ContactUser, IncomingRequest, Invite, OutgoingRequest
from .media import ImageBody, Media, MediaInfo, MediaUrls, VoiceBody
from .state import Endpoints, ReconnectPolicy, derive_endpoints
from .wire import PROTOCOL_VERSION, SUBPROTOCOL

__all__ = [
    "__version__",
    "CardAction",
    "DlpNotice",
    "CardBody",
    "ImageBody",
    "VoiceBody",
    "Media",
    "MediaInfo",
    "MediaUrls",
    "CardField",
    "NewCard",
    "SentCard",
    "Signature",
    "card_actions_allowed",
    "parse_signing_keys",
    "verify_card",
    "verify_notice",
    "Contact",
    "ContactEvent",
    "ContactUser",
    "IncomingRequest",
    "Invite",
    "OutgoingRequest",
    "TypingEvent",
    "TypingSender",
    "TypingBoard",
    "PresenceEvent",
    "PresenceInfo",
    "Privacy",
    "ReadPosition",
    "PROTOCOL_VERSION",
    "SUBPROTOCOL",
    # HTTP
    "login",
    "Api",
    "GROUP_EVENTS",
    "Group",
    "GroupMember",
    # WebSocket
    "Client",
    "ClientOptions",
    "ReconnectPolicy",
    "Endpoints",
    "derive_endpoints",
    # data
    "Body",
    "TextBody",
    "UnknownBody",
    "Message",
    "Receipt",
    "Disconnected",
    "Reconnected",
    "Event",
    "Hello",
    "Limits",
    "User",
    "Session",
    "Me",
    "Conversation",
    "History",
    "WsTicket",
    # official accounts
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
    "NoticeStats",
    # transactional alerts
    "Alert",
    "InboxUpdate",
    "InboxPage",
    "InboxCounts",
    "AlertPreferences",
    "Notification",
    "SystemClient",
    # relationship managers and the service desk
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
    "ServiceSession",
    "ServiceSessionDetail",
    "AgentDesk",
    "ServiceQueue",
    "DeskFigures",
    "QueueFigures",
    "AgentFigures",
    "RmAvailability",
    "Book",
    "BookEntry",
    "BookMessage",
    "CustomerCardView",
    "MyRm",
    "Handover",
    # recall and edit
    "EditBody",
    "RecallBody",
    "RecalledBody",
    "MessageLog",
    # errors
    "BankhubError",
    "ApiError",
    "AuthError",
    "ProtocolError",
    "ConnectionLost",
    "ClientClosed",
    "SendTimeout",
]
