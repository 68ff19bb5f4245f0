"""Public data types of the SDK (msgspec Structs, immutable).

These mirror the hub's wire format (protocol v1 and the HTTP API) but are the SDK's
own: the SDK never imports the server package. Decoding is lenient about *extra*
fields, so a newer server that adds fields does not break an older SDK.

Timestamps (``ts``, ``server_time``, ``last_message_ts``) are integers: milliseconds
since the Unix epoch, UTC.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from msgspec import Struct

__all__ = [
    "TextBody",
    "UnknownBody",
    "Body",
    "Message",
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
]


# --- message bodies --------------------------------------------------------------


class TextBody(Struct, frozen=True, tag="text", tag_field="kind"):
    """A plain-text body: ``{"kind": "text", "text": ...}``."""

    text: str


class UnknownBody(Struct, frozen=True):
    """A body of a kind this SDK version does not know (e.g. a future ``image``).

    ``data`` is the whole JSON object, ``kind`` included.
    """

    kind: str
    data: dict[str, Any]


Body = TextBody | UnknownBody


class Message(Struct, frozen=True):
    """A committed message. ``(conversation_id, seq)`` identifies it; seqs start at 1."""

    conversation_id: str
    message_id: str
    seq: int
    sender_id: str
    client_msg_id: str
    body: Body
    ts: int

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


class Hello(Struct, frozen=True):
    """The first frame of every connection."""

    protocol: int
    session_id: str
    user_id: str
    username: str
    role: str
    node: str
    server_time: int
    limits: Limits = Limits()


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


Event = Message | Receipt | Disconnected | Reconnected
"""What :meth:`bankhub_client.Client.events` yields."""


# --- HTTP API --------------------------------------------------------------------


class User(Struct, frozen=True):
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


class Me(Struct, frozen=True):
    id: str
    username: str
    display_name: str
    role: str
    org_id: str | None = None
    rm_id: str | None = None


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
