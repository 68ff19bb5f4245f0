"""Exceptions raised by the bankhub SDK.

Every exception derives from :class:`BankhubError`, so ``except BankhubError`` catches
anything the SDK raises on purpose (``ValueError`` for arguments refused locally and
``asyncio.CancelledError`` excepted).
"""

from __future__ import annotations

__all__ = [
    "BankhubError",
    "ApiError",
    "AuthError",
    "ProtocolError",
    "ConnectionLost",
    "ClientClosed",
    "SendTimeout",
]


class BankhubError(Exception):
    """Base class of every SDK error."""


class ApiError(BankhubError):
    """An HTTP request failed.

    ``status`` is the HTTP status, ``code`` the stable machine-readable code from the
    ``application/problem+json`` body (``"http_<status>"`` when the server sent none)
    and ``detail`` the human-readable explanation. ``title`` and ``type`` are the other
    problem fields, when present.
    """

    def __init__(self, status: int, code: str, detail: str, *, title: str | None = None, type: str | None = None) -> None:
        super().__init__(f"{status} {code}: {detail}")
        self.status = status
        self.code = code
        self.detail = detail
        self.title = title
        self.type = type


class AuthError(BankhubError):
    """The hub refused the credentials or ended the session.

    Raised when the WebSocket handshake is answered 401/403, or when the server closes
    the connection with 1008 (session revoked or expired, sustained abuse). The client
    does not reconnect after it: log in again. ``close_code`` is 1008 for a close, None
    for a refused handshake; ``status`` is the HTTP status of a refused handshake.
    """

    def __init__(self, message: str, *, close_code: int | None = None, status: int | None = None) -> None:
        super().__init__(message)
        self.close_code = close_code
        self.status = status


class ProtocolError(BankhubError):
    """The server answered a request with an ``error`` frame, or broke the protocol.

    ``code`` is one of the protocol error codes (``malformed``, ``unknown_type``,
    ``invalid_frame``, ``rate_limited``, ``forbidden``, ``not_found``, ``unavailable``,
    ``internal``) or ``"protocol"`` for a server that broke the protocol (no
    ``bankhub.v1`` subprotocol, no ``hello``). ``retry_after_ms`` is set on
    ``rate_limited``.
    """

    def __init__(self, code: str, message: str, *, retry_after_ms: int | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.retry_after_ms = retry_after_ms


class ConnectionLost(BankhubError):
    """The connection ended and the client will not reconnect.

    Either reconnection gave up (attempts or time exhausted), or the server closed
    with a code that reconnecting cannot fix (e.g. 1009, a frame too big).
    ``close_code``/``reason`` describe the last close seen, if any.
    """

    def __init__(self, message: str, *, close_code: int | None = None, reason: str = "") -> None:
        super().__init__(message)
        self.close_code = close_code
        self.reason = reason


class ClientClosed(BankhubError):
    """The client was closed (by :meth:`Client.close` or leaving ``async with``)."""


class SendTimeout(BankhubError, TimeoutError):
    """A send was not acknowledged in time.

    The message may still have been stored: to find out without risking a duplicate,
    call ``send`` again with the same ``client_msg_id`` (the server deduplicates it).
    """

    def __init__(self, message: str, *, client_msg_id: str) -> None:
        super().__init__(message)
        self.client_msg_id = client_msg_id
