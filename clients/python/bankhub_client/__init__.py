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

* :func:`login` / :class:`Api` — the HTTP API (sessions, conversations, history).
* :class:`Client` — the WebSocket connection: exactly-once, in-order delivery with
  automatic reconnect, sync and resend.
* :mod:`bankhub_client.state` — the pure bookkeeping behind it (cursors, pending sends,
  backoff, URL derivation).

The SDK does not depend on the server package; it mirrors the wire format itself.
"""

from ._version import __version__
from .api import Api, login
from .client import Client
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
    Body,
    Conversation,
    Disconnected,
    Event,
    Hello,
    History,
    Limits,
    Me,
    Message,
    Receipt,
    Reconnected,
    Session,
    TextBody,
    UnknownBody,
    User,
    WsTicket,
)
from .state import Endpoints, ReconnectPolicy, derive_endpoints
from .wire import PROTOCOL_VERSION, SUBPROTOCOL

__all__ = [
    "__version__",
    "PROTOCOL_VERSION",
    "SUBPROTOCOL",
    # HTTP
    "login",
    "Api",
    # WebSocket
    "Client",
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
    # errors
    "BankhubError",
    "ApiError",
    "AuthError",
    "ProtocolError",
    "ConnectionLost",
    "ClientClosed",
    "SendTimeout",
]
