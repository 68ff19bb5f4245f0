"""What nodes tell each other over the broker, after a commit.

Signals are published on the per-user channels of everyone concerned. A message signal
carries the committed message (the Redis broker seals it with the cluster key, so Redis
never holds plaintext); a lost signal costs only latency, because receivers fill seq
gaps from Postgres.
"""

from __future__ import annotations

import msgspec

from .protocol.frames import Alert, InboxUpdate, Message, Notice
from .models import Target

__all__ = [
    "MessageSignal",
    "ReceiptSignal",
    "RevokeSignal",
    "NoticeSignal",
    "FollowSignal",
    "AccountReadSignal",
    "AlertSignal",
    "InboxSignal",
    "PushSignal",
    "AccessSignal",
    "RmStatusSignal",
    "PresenceSignal",
    "PrincipalSignal",
    "Signal",
    "encode_signal",
    "decode_signal",
]


class MessageSignal(msgspec.Struct, tag="m", tag_field="t", gc=False):
    message: Message
    origin: str | None = None  # the connection that sent it: it already has a ``sent`` frame
    trace: str | None = None  # W3C traceparent of the publish span when tracing is on (bankhub.tracing)


class ReceiptSignal(msgspec.Struct, tag="r", tag_field="t", gc=False):
    conversation_id: str
    user_id: str
    read_seq: int
    last_seq: int


class RevokeSignal(msgspec.Struct, tag="x", tag_field="t", gc=False):
    """Close the user's connections that belong to ``session_ids`` (all of them when None)."""

    user_id: str
    session_ids: list[str] | None
    reason: str


class NoticeSignal(msgspec.Struct, tag="n", tag_field="t", gc=False):
    """An official-account event, on the broadcast channel: one per event, every node.

    ``event_seq`` is the event's place in the account stream: equal to ``notice.seq`` for
    a publication, the recall's own seq for a recall (then ``notice.recalled`` is true).
    Each node delivers it to its own connected followers that ``target`` selects.
    """

    event_seq: int
    notice: Notice
    target: Target


class FollowSignal(msgspec.Struct, tag="f", tag_field="t", gc=False):
    """The user followed (``following``) or unfollowed an account: nodes update their index."""

    user_id: str
    account_id: str
    following: bool


class AccountReadSignal(msgspec.Struct, tag="a", tag_field="t", gc=False):
    """The user's read position in an account moved: their other devices update unread."""

    user_id: str
    account_id: str
    read_seq: int
    unread: int


class AlertSignal(msgspec.Struct, tag="l", tag_field="t", gc=False):
    """A committed alert, on its recipient's channel. Receivers fill inbox-seq gaps from Postgres."""

    user_id: str
    alert: Alert


class InboxSignal(msgspec.Struct, tag="i", tag_field="t", gc=False):
    """The user's alerts changed state: their devices get ``update`` (without a request id)."""

    user_id: str
    update: InboxUpdate


class PushSignal(msgspec.Struct, tag="p", tag_field="t", gc=False):
    """Push one already-encoded server frame (``frame``, JSON text) to the user's sockets:
    service-desk statuses and assignments, handover notices."""

    user_id: str
    frame: str


class AccessSignal(msgspec.Struct, tag="c", tag_field="t", gc=False):
    """The user lost (``granted`` false) or gained access to a conversation: their
    connections stop (or resume) delivering it at once, then ``frame`` is pushed."""

    user_id: str
    conversation_id: str
    granted: bool
    frame: str


class RmStatusSignal(msgspec.Struct, tag="s", tag_field="t", gc=False):
    """An RM's availability changed, on the broadcast channel: every node updates the set
    of RMs whose customers get an auto-reply."""

    user_id: str
    status: str


class PresenceSignal(msgspec.Struct, tag="o", tag_field="t", gc=False):
    """A user came online or went offline (``last_seen`` ms), on that user's presence
    channel: only nodes whose connections watch the user subscribe it
    (:mod:`bankhub.delivery.presence`)."""

    user_id: str
    online: bool
    last_seen: int | None = None


class PrincipalSignal(msgspec.Struct, tag="u", tag_field="t", gc=False):
    """On the broadcast channel: sessions of the user were revoked, or what the user may do
    (or follows) changed. Every node drops its cached sessions of the user
    (:mod:`bankhub.session_cache`), whether or not it holds a connection of theirs."""

    user_id: str


Signal = (
    MessageSignal
    | ReceiptSignal
    | RevokeSignal
    | NoticeSignal
    | FollowSignal
    | AccountReadSignal
    | AlertSignal
    | InboxSignal
    | PushSignal
    | AccessSignal
    | RmStatusSignal
    | PresenceSignal
    | PrincipalSignal
)

_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Signal)


def encode_signal(signal: Signal) -> bytes:
    return _encoder.encode(signal)


def decode_signal(data: bytes) -> Signal:
    signal: Signal = _decoder.decode(data)
    return signal
