"""The WebSocket client: one logical, self-healing connection to a hub.

Guarantees (per :class:`Client`):

* **Sends are never lost or duplicated.** Each send carries a ``client_msg_id`` (a
  uuid4 unless given). It stays pending until the server acknowledges it; if the
  connection drops first, it is sent again with the same ``client_msg_id`` after the
  reconnect, and the server, which stores a ``client_msg_id`` once, answers the
  resend of an already committed send with the original message.
* **Incoming messages are yielded once, in seq order per conversation.** The client
  keeps, per conversation, the highest seq it holds. A live message that skips seqs
  triggers a ``sync`` instead of being yielded early; after a reconnect the client
  syncs from its cursors (repeating while ``has_more``), yields what it missed, and
  only then resends pending sends and lets new requests through.
* **Official-account notices are yielded once, in stream order per account.** The
  client keeps a cursor per followed account and sends them in every ``sync``, so
  notices and recalls published while it was away arrive after the reconnect, once
  (see :mod:`bankhub_client.notices`).
* **Reconnects are automatic** (capped exponential backoff with jitter, bounded by a
  :class:`~bankhub_client.ReconnectPolicy`) after a network loss or a close with
  1001/1006/1011/1012/1013/4000/4008. A close with 1008 (session revoked or expired, abuse)
  or a handshake refused with 401/403 ends the client with
  :class:`~bankhub_client.AuthError`; 1000 ends it quietly.

The pure bookkeeping lives in :mod:`bankhub_client.state`; this module does the I/O.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import uuid
from collections.abc import AsyncIterator, Callable, Generator, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import msgspec
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
from websockets.typing import Subprotocol

from .cards import CardBody, NewCard, verify_card, verify_notice
from ._version import __version__
from .api import Api
from .errors import ApiError, AuthError, BankhubError, ClientClosed, ConnectionLost, ProtocolError, SendTimeout
from .models import (
    Account,
    AccountReceipt,
    Disconnected,
    Event,
    FollowedAccount,
    Hello,
    Message,
    Notice,
    NoticeRecalled,
    Receipt,
    Reconnected,
    TextBody,
)
from .models import DlpNotice, EditBody, RecallBody
from .media import ImageBody, Media, VoiceBody, media_body
from .revise import EditFrame, RecallFrame
from .contacts import ContactEvent
from .liveness import PresenceEvent, PresenceInfo, PresenceListFrame, TypingEvent, TypingFrame, WatchPresenceFrame
from .alerts import Alert, AlertFrame, InboxCursor, InboxSyncedFrame, InboxUpdate, InboxUpdateFrame, ReadAlertsFrame, SyncInboxFrame
from .desk import AgentState, ConversationAdded, ConversationRemoved, RmChanged, ServiceAssigned, ServiceStatus
from .notices import NoticeInbox, SyncedAccount
from .options import ClientOptions
from .state import (
    RETRYABLE_ERRORS,
    Acked,
    CloseAction,
    Endpoints,
    FrameIds,
    Inbox,
    Pacer,
    PendingSend,
    Route,
    SyncedConversation,
    SyncResult,
    classify_close,
    classify_handshake_status,
    derive_endpoints,
    send_retry_delay,
    validate_id,
    validate_text,
    with_ticket,
)
from .wire import (
    PROTOCOL_VERSION,
    SUBPROTOCOL,
    AccountReceiptFrame,
    ClientFrame,
    ErrorFrame,
    HelloFrame,
    MessageFrame,
    NoticeFrame,
    NoticeRecalledFrame,
    PingFrame,
    PongFrame,
    ReadFrame,
    ReadNoticesFrame,
    ReceiptFrame,
    SendFrame,
    SentFrame,
    SyncedFrame,
    SyncFrame,
    decode_body,
    decode_server_frame,
    encode,
    to_account_receipt,
    to_hello,
    to_message,
    to_notice,
    to_notice_recalled,
    to_receipt,
)

__all__ = ["Client"]

log = logging.getLogger("bankhub_client")

_MAX_SYNC_ROUNDS = 100_000


class _Dropped(Exception):
    """The connection a request was written to went away before its answer."""


class _Transient(Exception):
    """A connection attempt failed in a way that a later attempt may not."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(str(error))
        self.error = error


@dataclass(frozen=True, slots=True)
class _End:
    error: BaseException | None


@dataclass(eq=False)
class _Connection:
    ws: ClientConnection
    hello: Hello
    pacer: Pacer
    gen: int = 0


class _Connecting:
    """What :meth:`Client.connect` returns: ``await`` it, or use it with ``async with``."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def __await__(self) -> Generator[Any, None, Client]:
        return self._start().__await__()

    async def _start(self) -> Client:
        await self._client._start()
        return self._client

    async def __aenter__(self) -> Client:
        return await self._start()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._client.close()


class Client:
    """A connection to a hub's ``/v1/ws``. Create it with :meth:`connect`.

    See the module docstring for the delivery guarantees. One task should consume
    :meth:`events`; incoming events are buffered (without bound) until consumed.
    """

    def __init__(self, url: str, *, token: str, options: ClientOptions | None = None, api: Api | None = None) -> None:
        self._signing_keys: dict[str, bytes] | None = None  # GET /v1/signing-keys, once
        self._keys_fetched_at = float("-inf")
        """The arguments of :meth:`connect`; ``async with Client(url, token=t) as c:``
        connects (as :meth:`connect` does)."""
        if not token:
            raise ValueError("token is required")
        opts = ClientOptions() if options is None else options
        self._options = opts
        self._endpoints = derive_endpoints(url)
        self._token = token
        self._sync_on_connect = opts.syncs_on_connect
        self._api = api if api is not None else Api(self._endpoints.http_base, token, timeout=opts.request_timeout)

        self._inbox = Inbox(cursors=opts.cursors)
        self._notices = NoticeInbox(opts.account_cursors)
        # alerts: the last inbox seq held (None: take the inbox's position when connecting)
        inbox_start = opts.inbox_cursor if opts.inbox_cursor is not None else (0 if opts.sync_on_connect else None)
        self._alerts = InboxCursor(inbox_start)
        self._alerts_supported = True
        self._inbox_snapshot_fresh = False
        self._inbox_task: asyncio.Task[None] | None = None
        self._ids = FrameIds()
        self._events: asyncio.Queue[Event | _End] = asyncio.Queue()
        self._conn: _Connection | None = None
        self._hello: Hello | None = None
        self._gen = 0
        self._ready = asyncio.Event()
        self._wake = asyncio.Event()
        self._sync_lock = asyncio.Lock()
        self._requests: dict[str, asyncio.Future[Any]] = {}
        self._send_futures: dict[tuple[str, str], asyncio.Future[Message]] = {}
        self._send_waiters: dict[tuple[str, str], int] = {}
        self._final: BaseException | None = None
        self._closing = False
        self._started = False
        self._supervisor: asyncio.Task[None] | None = None
        self._writer: asyncio.Task[None] | None = None
        self._gap_task: asyncio.Task[None] | None = None
        self._gap_again = False
        self._timers: set[asyncio.TimerHandle] = set()
        self._watching: list[str] = []  # presence: watched again after a reconnect

    # --- construction ---------------------------------------------------------------

    @classmethod
    def connect(
        cls, url: str, *, token: str, options: ClientOptions | None = None, api: Api | None = None
    ) -> _Connecting:
        """Connect to a hub: ``async with Client.connect(url, token=t) as c:`` (or
        ``c = await Client.connect(...)`` and later ``await c.close()``).

        ``url``: the hub's HTTP base (``https://hub``) or WebSocket URL
        (``wss://hub/v1/ws``). ``token``: a session token (:func:`bankhub_client.login`).
        ``options``: a :class:`~bankhub_client.ClientOptions` (None: the defaults):
        where to start (by default nothing that already exists is yielded; cursors
        resume an earlier run), reconnects, timeouts, page size, keep-alive. ``api``:
        the :class:`Api` to use for the HTTP calls (default: one on the same hub and
        token; either way the client closes it).

        Raises :class:`AuthError` (token refused), :class:`ProtocolError` (not a
        bankhub v1 server), :class:`ConnectionLost` (unreachable; the first connection
        is not retried) or :class:`ApiError` (the conversation snapshot failed).
        """
        return _Connecting(cls(url, token=token, options=options, api=api))

    async def __aenter__(self) -> Client:
        if not self._started:
            await self._start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def _start(self) -> None:
        if self._started:
            raise RuntimeError("this client was already started")
        self._started = True
        try:
            try:
                conn = await self._open()
            except _Transient as exc:
                raise ConnectionLost(f"could not connect to {self._endpoints.ws_url}: {exc.error}") from exc.error
            self._install(conn)
            if not self._sync_on_connect:
                # Frames arriving meanwhile wait in the socket; messages up to the
                # snapshot are dropped, later ones are yielded (gaps are synced).
                for conversation in await self._api.conversations():
                    self._inbox.cursors.seed(conversation.id, conversation.last_seq)
                for followed in await self._followed_accounts():
                    self._notices.seed(followed.account.id, followed.last_seq)
                self._notices.go_live()  # no sync first: live notices count from the snapshot
            if self._alerts.cursor is None:
                self._alerts.cursor = await self._inbox_position()
                self._inbox_snapshot_fresh = True  # nothing to catch up on this first connection
        except BaseException:
            self._closing = True
            if self._conn is not None:
                await self._conn.ws.close()
                self._conn = None
            await self._api.aclose()
            raise
        self._supervisor = asyncio.create_task(self._supervise(conn), name="bankhub-client-reader")
        self._start_writer(conn, sync=self._sync_on_connect)

    # --- public surface --------------------------------------------------------------

    @property
    def endpoints(self) -> Endpoints:
        """The hub's HTTP base and WebSocket URL."""
        return self._endpoints

    @property
    def options(self) -> ClientOptions:
        """The options this client was made with."""
        return self._options

    @property
    def api(self) -> Api:
        """An :class:`Api` on the same hub and token (closed with the client)."""
        return self._api

    @property
    def hello(self) -> Hello:
        """The ``hello`` of the current (or last) connection."""
        if self._hello is None:
            raise RuntimeError("not connected yet")
        return self._hello

    @property
    def user_id(self) -> str:
        """My user id (from ``hello``)."""
        return self.hello.user_id

    @property
    def connected(self) -> bool:
        """True while a connection is up and caught up (sync done after a reconnect)."""
        return self._final is None and self._conn is not None and self._ready.is_set()

    @property
    def cursors(self) -> dict[str, int]:
        """Per conversation, the highest seq held with no hole before it (a copy).

        Persist it and pass it as ``ClientOptions(cursors=...)`` to a later :meth:`connect` to resume."""
        return self._inbox.cursors.snapshot()

    @property
    def inbox_cursor(self) -> int | None:
        """The last alert inbox seq held. Persist it and pass it as ``ClientOptions(inbox_cursor=...)`` to resume."""
        return self._alerts.cursor

    @property
    def account_cursors(self) -> dict[str, int]:
        """Per followed official account, the last account event seq held (a copy).

        Persist it and pass it as ``ClientOptions(account_cursors=...)`` to a later :meth:`connect` to resume."""
        return self._notices.snapshot()

    @property
    def pending_sends(self) -> int:
        """How many sends wait for their acknowledgement."""
        return len(self._inbox.pending)

    async def open_direct(self, username: str) -> str:
        """The id of my direct conversation with ``username`` (created if needed)."""
        return (await self._api.open_direct(username)).id

    async def signing_keys(self, *, refresh: bool = False) -> dict[str, bytes]:
        """The hub's public signing keys (``GET /v1/signing-keys``), fetched once and kept;
        ``refresh`` asks again (a key id not known yet does so by itself, see :meth:`verified`)."""
        if refresh or self._signing_keys is None:
            self._signing_keys = await self._api.signing_keys()
        return self._signing_keys

    async def _keys_for(self, key_id: str | None) -> dict[str, bytes]:
        keys = await self.signing_keys()
        now = time.monotonic()
        if key_id is not None and key_id not in keys and now - self._keys_fetched_at >= 60.0:
            self._keys_fetched_at = now  # a rotated key: ask again, at most once a minute
            keys = await self.signing_keys(refresh=True)
        return keys

    async def verified(self, message: Message) -> Message:
        """``message`` with ``body.verified`` set when its body is a card: True only if the
        hub's signature verifies for exactly this conversation, message id, sender and time
        (a copy moved elsewhere or altered is False). Other messages are returned as they are."""
        body = message.body
        if not isinstance(body, CardBody):
            return message
        keys = await self._keys_for(body.signature.key_id if body.signature else None)
        return msgspec.structs.replace(message, body=msgspec.structs.replace(body, verified=verify_card(message, keys)))

    async def verify_notice(self, notice: Notice) -> bool:
        """Whether ``notice`` carries the hub's valid signature (a real bank account's notice,
        not a look-alike's)."""
        keys = await self._keys_for(notice.signature.key_id if notice.signature else None)
        return verify_notice(notice, keys)

    async def follow(self, account_id: str) -> Account:
        """Follow an official account (idempotent); its notices arrive from now on."""
        return await self._api.follow(account_id)

    async def unfollow(self, account_id: str) -> None:
        """Stop following an official account; the client drops its cursor there."""
        await self._api.unfollow(account_id)
        self._notices.forget(account_id)

    async def send(
        self, conversation_id: str, text: str, *, client_msg_id: str | None = None, timeout: float | None = None
    ) -> Message:
        """Send a text message; return it as committed (``seq``, ``message_id``, ``ts``).

        Returns only after the server committed it. A connection lost meanwhile does
        not fail the send: it is resent with the same ``client_msg_id`` after the
        reconnect. Sending again with a ``client_msg_id`` that was stored before
        returns the original message's ``seq``/``message_id``/``ts`` (``sent`` carries
        no body: the returned body is ``text``). Concurrent sends with the same
        ``client_msg_id`` share one transmission. My sends are not yielded by
        :meth:`events`.

        Raises ``ValueError`` for a text the hub would refuse (empty, longer than
        ``hello.limits.max_text_chars``), :class:`ProtocolError` when the server
        refuses the send (``forbidden``, ``not_found``, ...; ``rate_limited`` and
        ``unavailable`` are retried until the timeout), :class:`SendTimeout` when no
        acknowledgement came within ``timeout`` (default ``send_timeout``; the send
        is then given up, but may have been stored: retry with the same
        ``client_msg_id``), or the error that ended the client.
        """
        self._check_usable()
        validate_id("conversation_id", conversation_id)
        limits = self.hello.limits
        body = validate_text(text, limits)
        cmid = str(uuid.uuid4()) if client_msg_id is None else validate_id("client_msg_id", client_msg_id)
        size = len(encode(SendFrame(id="s" + "9" * 20, conversation_id=conversation_id, client_msg_id=cmid, body=body)))
        if size > limits.max_frame_bytes:
            raise ValueError(f"the send frame would be {size} bytes; this hub accepts at most {limits.max_frame_bytes}")
        entry, _ = self._inbox.pending.add(conversation_id, cmid, text)
        future = self._send_futures.get(entry.key)
        if future is None:
            future = asyncio.get_running_loop().create_future()
            self._send_futures[entry.key] = future
        self._send_waiters[entry.key] = self._send_waiters.get(entry.key, 0) + 1
        self._wake.set()
        try:
            return await asyncio.wait_for(asyncio.shield(future), self._options.send_timeout if timeout is None else timeout)
        except TimeoutError:
            if future.done() and not future.cancelled() and future.exception() is None:
                return future.result()
            self._give_up(entry, future)
            raise SendTimeout(f"send {cmid} was not acknowledged in time", client_msg_id=cmid) from None
        except asyncio.CancelledError:
            self._give_up(entry, future)
            raise
        finally:
            left = self._send_waiters.get(entry.key, 1) - 1
            if left > 0:
                self._send_waiters[entry.key] = left
            else:
                self._send_waiters.pop(entry.key, None)

    async def edit(
        self, conversation_id: str, message_id: str, text: str, *, client_msg_id: str | None = None, timeout: float | None = None
    ) -> Message:
        """Replace the text of my own text message ``message_id`` (hub feature ``edit``,
        within the hub's edit window); return the committed edit message (its body an
        :class:`~bankhub_client.models.EditBody`: apply it, e.g. with
        :class:`~bankhub_client.revise.MessageLog`). Idempotent by ``client_msg_id`` and
        retried across reconnects until ``timeout`` (default ``request_timeout``). Raises
        ``ValueError`` for a text the hub would refuse, :class:`ProtocolError`
        (``forbidden``: not mine, not text, recalled, or after the window; ``not_found``)
        or ``TimeoutError``."""
        validate_id("conversation_id", conversation_id)
        validate_id("message_id", message_id)
        body = validate_text(text, self.hello.limits)
        cmid = str(uuid.uuid4()) if client_msg_id is None else validate_id("client_msg_id", client_msg_id)
        sent = await self._call(
            "e",
            lambda fid: EditFrame(id=fid, conversation_id=conversation_id, message_id=message_id, client_msg_id=cmid, body=body),
            timeout,
        )
        assert isinstance(sent, SentFrame)
        if sent.dlp and bytes(sent.body) != b"null":  # data-loss prevention masked the new text
            masked = decode_body(sent.body)
            if isinstance(masked, EditBody):
                return self._committed_change(sent, masked)
        return self._committed_change(sent, EditBody(message_id=message_id, body=body))

    async def recall(self, conversation_id: str, message_id: str, *, timeout: float | None = None) -> Message:
        """Withdraw my own text message ``message_id`` (hub feature ``edit``, within the
        hub's recall window); return the committed recall message (body
        :class:`~bankhub_client.models.RecallBody`). Recalling it again answers the same
        recall. Retried across reconnects until ``timeout``; raises :class:`ProtocolError`
        (``forbidden``, ``not_found``) or ``TimeoutError``."""
        validate_id("conversation_id", conversation_id)
        validate_id("message_id", message_id)
        sent = await self._call(
            "x", lambda fid: RecallFrame(id=fid, conversation_id=conversation_id, message_id=message_id), timeout
        )
        return self._committed_change(sent, RecallBody(message_id=message_id))

    async def send_media(
        self,
        conversation_id: str,
        media: Media,
        *,
        caption: str | None = None,
        client_msg_id: str | None = None,
        timeout: float | None = None,
    ) -> Message:
        """Send an uploaded picture or voice note (hub feature ``media``; upload it first with
        :meth:`Api.upload_media <bankhub_client.Api.upload_media>` into the same conversation);
        return the committed message, its body an :class:`~bankhub_client.media.ImageBody` or
        :class:`~bankhub_client.media.VoiceBody` with the item's facts as the hub stores them.
        Idempotent by ``client_msg_id`` and retried across reconnects until ``timeout``
        (default ``request_timeout``). Raises ``ValueError`` (a caption on a voice note),
        :class:`ProtocolError` (``not_found``: not my upload into this conversation;
        ``media_not_ready``: still being scanned; ``media_rejected``) or ``TimeoutError``."""
        validate_id("conversation_id", conversation_id)
        body = media_body(media, caption)
        wire_body = ImageBody(media_id=media.media_id, caption=caption) if isinstance(body, ImageBody) else VoiceBody(media_id=media.media_id)
        cmid = str(uuid.uuid4()) if client_msg_id is None else validate_id("client_msg_id", client_msg_id)
        sent = await self._call(
            "m", lambda fid: SendFrame(id=fid, conversation_id=conversation_id, client_msg_id=cmid, body=wire_body), timeout
        )
        assert isinstance(sent, SentFrame)
        if sent.dlp and bytes(sent.body) != b"null" and isinstance(body, ImageBody):
            # data-loss prevention masked the caption: hold what the members see, not my own copy
            masked = decode_body(sent.body)
            if isinstance(masked, ImageBody):
                body = msgspec.structs.replace(body, caption=masked.caption)
        return self._committed_change(sent, body)

    async def send_card(
        self, conversation_id: str, card: NewCard, *, client_msg_id: str | None = None, timeout: float | None = None
    ) -> Message:
        """Send a service card (hub feature ``cards``; relationship managers and service-desk
        agents); return the committed message, its body the :class:`~bankhub_client.cards.CardBody`
        as the hub stored it, with the hub's signature. Idempotent by ``client_msg_id`` and
        retried across reconnects until ``timeout`` (default ``request_timeout``). Raises
        :class:`ProtocolError` (``forbidden``: not staff who may send cards; ``invalid_frame``:
        a link or image off the hub's allow-list) or ``TimeoutError``."""
        validate_id("conversation_id", conversation_id)
        cmid = str(uuid.uuid4()) if client_msg_id is None else validate_id("client_msg_id", client_msg_id)
        sent = await self._call(
            "k", lambda fid: SendFrame(id=fid, conversation_id=conversation_id, client_msg_id=cmid, body=card), timeout
        )
        assert isinstance(sent, SentFrame)
        body = decode_body(sent.body) if bytes(sent.body) != b"null" else None
        if not isinstance(body, CardBody):
            raise ProtocolError("protocol", "the hub's sent answer carries no signed card")
        return self._committed_change(sent, body)

    def _committed_change(self, sent: object, body: EditBody | RecallBody | ImageBody | VoiceBody | CardBody) -> Message:
        """The edit/recall message a ``sent`` answered; its seq is mine (held like a send's)."""
        assert isinstance(sent, SentFrame)
        if self._inbox.cursors.hold(sent.conversation_id, sent.seq) and self._final is None:
            handle = asyncio.get_running_loop().call_later(
                self._options.gap_grace, self._check_hole, sent.conversation_id, sent.seq
            )
            self._timers.add(handle)
        return Message(
            conversation_id=sent.conversation_id,
            message_id=sent.message_id,
            seq=sent.seq,
            sender_id=self.user_id,
            client_msg_id=sent.client_msg_id,
            body=body,
            ts=sent.ts,
            dlp=tuple(DlpNotice(kind=d.kind, masked=d.masked) for d in sent.dlp),
        )

    async def read(self, conversation_id: str, seq: int, *, timeout: float | None = None) -> Receipt:
        """Move my read position in a conversation up to ``seq``; return the receipt.

        Idempotent (a read position never moves backwards); retried across reconnects
        until ``timeout`` (default ``request_timeout``). Raises :class:`ProtocolError`
        (``forbidden``, ``not_found``, ...) or ``TimeoutError``.
        """
        validate_id("conversation_id", conversation_id)
        if seq < 0:
            raise ValueError("seq must be >= 0")
        result = await self._call("r", lambda fid: ReadFrame(id=fid, conversation_id=conversation_id, seq=seq), timeout)
        assert isinstance(result, Receipt)
        return result

    async def sync_inbox(self, *, timeout: float | None = None) -> list[Alert]:
        """Fetch the alerts after my inbox cursor now (repeating while ``has_more``).

        They are yielded by :meth:`events` as usual (in seq order, once) and returned.
        The client does this by itself after every (re)connect and when a live alert
        shows that some were missed.
        """
        fresh: list[Alert] = []
        while True:
            result = await self._call(
                "i", lambda fid: SyncInboxFrame(id=fid, since=self._alerts.cursor or 0, limit=self._options.sync_limit), timeout
            )
            got, more = result
            fresh.extend(got)
            if not more:
                return fresh

    async def read_alerts(
        self, alert_ids: Sequence[str] = (), *, up_to_seq: int | None = None, timeout: float | None = None
    ) -> InboxUpdate:
        """Mark alerts read (those listed and/or every one up to ``up_to_seq``); returns
        the update with my exact ``unread`` count. My other devices get it as an event."""
        if not alert_ids and up_to_seq is None:
            raise ValueError("name alert_ids, or up_to_seq, or both")
        ids = list(alert_ids)
        result = await self._call("a", lambda fid: ReadAlertsFrame(id=fid, alert_ids=ids, up_to_seq=up_to_seq), timeout)
        assert isinstance(result, InboxUpdate)
        return result

    async def read_notices(self, account_id: str, seq: int, *, timeout: float | None = None) -> AccountReceipt:
        """Move my read position in an official account up to ``seq``; return the
        receipt (``read_seq``, and my exact ``unread`` count there). My other
        connections get an :class:`AccountReceipt` event.

        Idempotent (a read position never moves backwards; past the end is clamped);
        retried across reconnects until ``timeout`` (default ``request_timeout``).
        Raises :class:`ProtocolError` (``not_found``: I do not follow it) or ``TimeoutError``.
        """
        validate_id("account_id", account_id)
        if seq < 0:
            raise ValueError("seq must be >= 0")
        result = await self._call("n", lambda fid: ReadNoticesFrame(id=fid, account_id=account_id, seq=seq), timeout)
        assert isinstance(result, AccountReceipt)
        return result

    async def typing(self, conversation_id: str, active: bool = True) -> None:
        """Tell the conversation's other members I am typing (``active``) or stopped (hub
        feature ``typing``). Best effort: never answered, never retried, dropped while
        disconnected; debounce it with :class:`~bankhub_client.liveness.TypingSender`."""
        validate_id("conversation_id", conversation_id)
        conn = self._conn
        if conn is None or not self._ready.is_set():
            return
        try:
            await self._write(conn, encode(TypingFrame(conversation_id=conversation_id, active=active)))
        except _Dropped:
            pass

    async def watch_presence(self, user_ids: Sequence[str], *, timeout: float | None = None) -> list[PresenceInfo]:
        """Ask whether these users are online and follow them (hub feature ``presence``):
        replaces what was watched before (an empty list stops) and is repeated by itself
        after a reconnect. Changes arrive from :meth:`events` as
        :class:`~bankhub_client.liveness.PresenceEvent`. Only related users (contacts, my
        RM, my customers) are ever known; the others read ``online`` None."""
        ids = [validate_id("user_id", u) for u in user_ids]
        self._watching = ids
        result = await self._call("w", lambda fid: WatchPresenceFrame(id=fid, user_ids=ids), timeout)
        assert isinstance(result, PresenceListFrame)
        return result.users

    async def ping(self, *, timeout: float | None = None) -> float:
        """Round trip to the server (``ping``/``pong``); returns the seconds it took."""
        started = time.monotonic()
        await self._call("p", lambda fid: PingFrame(id=fid), timeout)
        return time.monotonic() - started

    async def sync(self, *, timeout: float | None = None) -> list[Message]:
        """Fetch everything after my cursors now (repeating while ``has_more``).

        The messages found are yielded by :meth:`events` as usual (in order, once);
        this returns them as well (notices found are only yielded). ``timeout`` (default
        ``request_timeout``) bounds the wait for a connection and each round. Raises
        :class:`ProtocolError` or ``TimeoutError``.
        """
        limit = self._options.request_timeout if timeout is None else timeout
        delivered: list[Message] = []
        attempt = 0
        while True:
            attempt += 1
            conn = await asyncio.wait_for(self._wait_ready(), limit)
            try:
                async with self._sync_lock:
                    await self._sync_rounds(conn, delivered, limit)
                return delivered
            except _Dropped:
                continue
            except ProtocolError as exc:
                if exc.code not in RETRYABLE_ERRORS:
                    raise
                await asyncio.sleep(send_retry_delay(exc.code, exc.retry_after_ms, attempt))

    async def events(self) -> AsyncIterator[Event]:
        """Incoming events: :class:`Message` (others' messages and my own from other
        devices, never the same ``(conversation_id, seq)`` twice, in seq order per
        conversation), :class:`Receipt` (read positions moved; not the answers to my
        own :meth:`read`), :class:`Notice` (a notice of an official account I follow,
        never the same ``(account_id, seq)`` twice, in seq order per account; a
        ``recalled`` one was withdrawn before I got it), :class:`NoticeRecalled` (a notice
        I got was withdrawn: hide it; once per notice), :class:`AccountReceipt` (my read
        position in an account moved; not the answers to my own :meth:`read_notices`),
        :class:`~bankhub_client.Alert` (a new alert in my inbox, in inbox-seq order, each once,
        including those that arrived while I was away), :class:`~bankhub_client.InboxUpdate`
        (alerts read or archived on another device; not the answers to my own
        :meth:`read_alerts`), and :class:`Disconnected`/:class:`Reconnected` notices.

        Ends when the client is closed or the server closed with 1000; raises
        :class:`AuthError` (1008 / credentials refused) or :class:`ConnectionLost`
        (reconnecting gave up) after the events received before it.
        """
        while True:
            item = await self._events.get()
            if isinstance(item, _End):
                self._events.put_nowait(item)  # later and concurrent iterators end too
                if item.error is not None:
                    raise item.error
                return
            yield item

    async def close(self) -> None:
        """Close the connection (1000) and the HTTP client. Pending sends fail with
        :class:`ClientClosed` (they may have been stored). Idempotent."""
        if self._closing:
            return
        self._closing = True
        self._finish(None, ClientClosed("the client was closed"))
        for handle in self._timers:
            handle.cancel()
        self._timers.clear()
        tasks = [t for t in (self._supervisor, self._writer, self._gap_task, self._inbox_task) if t is not None and t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.ws.close()
        await self._api.aclose()

    # --- connection lifecycle --------------------------------------------------------

    async def _open(self) -> _Connection:
        """One connection attempt: handshake and ``hello``. Raises :class:`_Transient`
        for failures worth retrying, else AuthError/ProtocolError/ConnectionLost."""
        url = self._endpoints.ws_url
        headers: dict[str, str] = {}
        if self._options.use_ticket:
            try:
                ticket = await self._api.ws_ticket()
            except ApiError as exc:
                action = CloseAction.RECONNECT if exc.status == 0 else classify_handshake_status(exc.status)
                if action is CloseAction.AUTH:
                    raise AuthError(f"the hub refused a ws ticket: {exc}", status=exc.status) from exc
                if action is CloseAction.RECONNECT:
                    raise _Transient(exc) from exc
                raise
            url = with_ticket(url, ticket.ticket)
        else:
            headers["Authorization"] = f"Bearer {self._token}"
        try:
            ws = await ws_connect(
                url,
                subprotocols=[Subprotocol(SUBPROTOCOL)],
                additional_headers=headers,
                user_agent_header=f"bankhub-client/{__version__}",
                open_timeout=self._options.open_timeout,
                ping_interval=self._options.ping_interval,
                ping_timeout=self._options.ping_interval,
                close_timeout=5,
                max_size=self._options.max_message_bytes,
            )
        except InvalidStatus as exc:
            status = exc.response.status_code
            action = classify_handshake_status(status)
            if action is CloseAction.AUTH:
                raise AuthError(f"the hub refused the connection: HTTP {status}", status=status) from exc
            if action is CloseAction.RECONNECT:
                raise _Transient(exc) from exc
            raise ConnectionLost(f"the hub refused the WebSocket handshake: HTTP {status}") from exc
        except (OSError, TimeoutError, InvalidHandshake) as exc:
            raise _Transient(exc) from exc
        try:
            if ws.subprotocol != SUBPROTOCOL:
                raise ProtocolError("protocol", f"the server did not accept the {SUBPROTOCOL} subprotocol")
            try:
                async with asyncio.timeout(self._options.open_timeout):
                    data = await ws.recv()
            except TimeoutError as exc:
                raise _Transient(exc) from exc
            except ConnectionClosed as exc:
                code = exc.rcvd.code if exc.rcvd is not None else 1006
                reason = exc.rcvd.reason if exc.rcvd is not None else ""
                action = classify_close(code)
                if action is CloseAction.AUTH:
                    raise AuthError(f"the hub closed the connection: {code} {reason}", close_code=code) from exc
                if action is CloseAction.RECONNECT:
                    raise _Transient(exc) from exc
                raise ConnectionLost(f"the hub closed the connection: {code} {reason}", close_code=code, reason=reason) from exc
            try:
                frame = decode_server_frame(data)
            except msgspec.DecodeError as exc:
                raise ProtocolError("protocol", f"invalid hello frame: {exc}") from exc
            if not isinstance(frame, HelloFrame):
                raise ProtocolError("protocol", "the first frame was not hello")
            if frame.protocol != PROTOCOL_VERSION:
                raise ProtocolError("protocol", f"the server speaks protocol {frame.protocol}, not {PROTOCOL_VERSION}")
            hello = to_hello(frame)
            if self._hello is not None and hello.user_id != self._hello.user_id:
                raise AuthError("the token now belongs to another user")
        except BaseException:
            await ws.close()
            raise
        return _Connection(ws=ws, hello=hello, pacer=Pacer.for_limits(hello.limits, time.monotonic()))

    def _install(self, conn: _Connection) -> None:
        self._gen += 1
        conn.gen = self._gen
        self._conn = conn
        self._hello = conn.hello
        self._inbox.user_id = conn.hello.user_id
        self._notices.connection_started(live=False)  # live after this connection's first sync

    def _connection_lost(self) -> None:
        self._gen += 1
        self._conn = None
        self._ready.clear()
        self._inbox.pending.connection_lost()
        for future in self._requests.values():
            if not future.done():
                future.set_exception(_Dropped())
        self._wake.set()

    async def _supervise(self, conn: _Connection) -> None:
        try:
            while True:
                code, reason = await self._read_loop(conn)
                self._connection_lost()
                if self._closing or self._final is not None:
                    return
                action = classify_close(code)
                if action is CloseAction.RECONNECT and self._options.reconnect is None:
                    action = CloseAction.FATAL
                if action is not CloseAction.RECONNECT:
                    self._emit(Disconnected(code=code, reason=reason, will_reconnect=False))
                    if action is CloseAction.STOP:
                        self._finish(None, ConnectionLost("the hub closed the connection", close_code=code, reason=reason))
                    elif action is CloseAction.AUTH:
                        self._finish(AuthError(f"the hub ended the session: {code} {reason}".strip(), close_code=code))
                    else:
                        self._finish(
                            ConnectionLost(f"the hub closed the connection: {code} {reason}".strip(), close_code=code, reason=reason)
                        )
                    return
                log.info("connection lost (%s %s); reconnecting", code, reason)
                self._emit(Disconnected(code=code, reason=reason, will_reconnect=True))
                dropped_at = time.monotonic()
                try:
                    conn, attempts = await self._reconnect(dropped_at, code, reason)
                except BankhubError as exc:
                    self._finish(exc)
                    return
                self._install(conn)
                log.info("reconnected to node %s after %d attempt(s)", conn.hello.node, attempts)
                self._emit(Reconnected(hello=conn.hello, attempts=attempts, downtime=time.monotonic() - dropped_at))
                self._start_writer(conn, sync=True)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug: end loudly rather than hang
            log.exception("bankhub client reader failed")
            self._finish(ConnectionLost(f"internal client error: {exc!r}"))

    async def _reconnect(self, dropped_at: float, code: int, reason: str) -> tuple[_Connection, int]:
        assert self._options.reconnect is not None
        policy = self._options.reconnect
        attempt = 0
        last: BaseException | None = None
        while True:
            attempt += 1
            elapsed = time.monotonic() - dropped_at
            if not policy.allows(attempt, elapsed):
                raise ConnectionLost(
                    f"gave up reconnecting after {attempt - 1} attempt(s) in {elapsed:.1f}s (last error: {last!r})",
                    close_code=code,
                    reason=reason,
                )
            delay = policy.delay(attempt, random.random())
            if policy.max_elapsed is not None:
                delay = min(delay, max(0.0, policy.max_elapsed - elapsed))
            await asyncio.sleep(delay)
            try:
                return await self._open(), attempt
            except _Transient as exc:
                last = exc.error
                log.info("reconnect attempt %d failed: %r", attempt, exc.error)

    async def _read_loop(self, conn: _Connection) -> tuple[int, str]:
        try:
            while True:
                data = await conn.ws.recv()
                try:
                    self._dispatch(data)
                except Exception:
                    log.exception("failed to handle a server frame")
        except ConnectionClosed as exc:
            if exc.rcvd is None:
                return 1006, ""
            return exc.rcvd.code, exc.rcvd.reason

    def _start_writer(self, conn: _Connection, *, sync: bool) -> None:
        if self._writer is not None and not self._writer.done():
            self._writer.cancel()
        self._writer = asyncio.create_task(self._resume_and_write(conn, sync), name="bankhub-client-writer")

    async def _resume_and_write(self, conn: _Connection, sync: bool) -> None:
        """Per connection: sync (after a reconnect), then transmit pending sends in
        order for as long as the connection lives."""
        try:
            if sync:
                attempt = 0
                while True:
                    attempt += 1
                    try:
                        async with self._sync_lock:
                            await self._sync_rounds(conn, [], self._options.request_timeout)
                        break
                    except (ProtocolError, TimeoutError) as exc:
                        code = exc.code if isinstance(exc, ProtocolError) else "timeout"
                        retry_after = exc.retry_after_ms if isinstance(exc, ProtocolError) else None
                        log.warning("sync after connect failed (%s); retrying", exc)
                        await asyncio.sleep(send_retry_delay(code, retry_after, attempt))
            self._ready.set()
            self._catch_up_inbox()
            if sync and self._watching:
                # the new connection watches nothing yet; its answer comes back as events
                await self._write(conn, encode(WatchPresenceFrame(id=self._ids.next("w"), user_ids=self._watching)))
            pending = self._inbox.pending
            while conn.gen == self._gen and self._final is None:
                due = pending.due(time.monotonic())
                for entry in due:
                    if entry.frame_id is not None or pending.match(*entry.key) is not entry:
                        continue
                    frame_id = self._ids.next("s")
                    pending.transmitting(entry, frame_id)
                    frame = SendFrame(
                        id=frame_id,
                        conversation_id=entry.conversation_id,
                        client_msg_id=entry.client_msg_id,
                        body=TextBody(text=entry.text),
                    )
                    await self._write(conn, encode(frame))
                if due:
                    continue
                self._wake.clear()
                if pending.due(time.monotonic()):
                    continue
                try:
                    await asyncio.wait_for(self._wake.wait(), pending.next_due_in(time.monotonic()))
                except TimeoutError:
                    pass
        except _Dropped:
            return
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if self._final is not None:
                return  # the client ended meanwhile (closed, revoked, gave up)
            log.exception("bankhub client writer failed")
            self._finish(exc if isinstance(exc, BankhubError) else ConnectionLost(f"internal client error: {exc!r}"))
            await conn.ws.close()

    async def _write(self, conn: _Connection, data: bytes) -> None:
        wait = conn.pacer.reserve(time.monotonic())
        if wait > 0:
            await asyncio.sleep(wait)
        if conn.gen != self._gen:
            raise _Dropped()
        try:
            await conn.ws.send(data.decode("utf-8"))  # a text frame: binary ones are refused
        except ConnectionClosed as exc:
            raise _Dropped() from exc

    async def _exchange(self, conn: _Connection, frame_id: str, data: bytes, timeout: float | None) -> Any:
        """Write a request frame and wait for the frame answering ``frame_id``."""
        if conn.gen != self._gen:
            raise _Dropped()
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._requests[frame_id] = future
        try:
            await self._write(conn, data)
            return await asyncio.wait_for(future, timeout)
        finally:
            self._requests.pop(frame_id, None)

    async def _call(self, prefix: str, build: Callable[[str], ClientFrame], timeout: float | None) -> Any:
        """A request retried across reconnects (and after rate_limited) until ``timeout``."""
        async with asyncio.timeout(self._options.request_timeout if timeout is None else timeout):
            attempt = 0
            while True:
                attempt += 1
                conn = await self._wait_ready()
                frame_id = self._ids.next(prefix)
                try:
                    return await self._exchange(conn, frame_id, encode(build(frame_id)), None)
                except _Dropped:
                    continue
                except ProtocolError as exc:
                    if exc.code not in RETRYABLE_ERRORS:
                        raise
                    await asyncio.sleep(send_retry_delay(exc.code, exc.retry_after_ms, attempt))

    async def _wait_ready(self) -> _Connection:
        while True:
            self._check_usable()
            if self._ready.is_set() and self._conn is not None:
                return self._conn
            await self._ready.wait()
            if self._ready.is_set() and self._conn is None and self._final is None:
                await asyncio.sleep(0)  # a stale wake-up: the connection already dropped

    async def _sync_rounds(self, conn: _Connection, delivered: list[Message], timeout: float | None) -> None:
        limits = conn.hello.limits
        limit = max(1, min(self._options.sync_limit, limits.max_sync_limit))
        for _ in range(_MAX_SYNC_ROUNDS):
            # a conversation at 0 is read from seq 1 whether listed or not: leave it out
            since = {c: s for c, s in self._inbox.cursors.snapshot().items() if s > 0}
            accounts = self._notices.snapshot()
            frame_id = self._ids.next("y")
            data = encode(SyncFrame(id=frame_id, since=since, limit=limit, accounts=accounts))
            if len(data) > limits.max_frame_bytes:
                raise BankhubError(
                    f"a sync frame for {len(since)} conversations and {len(accounts)} accounts would be "
                    f"{len(data)} bytes, over the hub's {limits.max_frame_bytes}-byte frame limit"
                )
            result = await self._exchange(conn, frame_id, data, timeout)
            assert isinstance(result, SyncResult)
            delivered.extend(result.delivered)
            if not result.more:
                return

    # --- incoming frames -----------------------------------------------------------

    def _dispatch(self, data: str | bytes) -> None:
        try:
            frame = decode_server_frame(data)
        except msgspec.DecodeError as exc:
            log.warning("ignoring an undecodable server frame: %s", exc)
            return
        if frame is None:
            return  # a frame type this SDK does not know (a newer hub)
        if isinstance(frame, MessageFrame):
            self._on_message(to_message(frame.message))
        elif isinstance(frame, SentFrame):
            acked = self._inbox.on_sent(
                frame.id, frame.conversation_id, frame.client_msg_id, frame.message_id, frame.seq, frame.ts,
                # data-loss prevention: the masked body the members see, and what was masked
                body=decode_body(frame.body) if frame.dlp and bytes(frame.body) != b"null" else None,
                dlp=tuple(DlpNotice(kind=d.kind, masked=d.masked) for d in frame.dlp),
            )
            if acked is not None:
                self._ack(acked)
            else:
                self._resolve(frame.id, frame)  # an edit or recall (client.edit, client.recall)
        elif isinstance(frame, SyncedFrame):
            result = self._inbox.on_synced(
                SyncedConversation(c.conversation_id, [to_message(m) for m in c.messages], c.has_more)
                for c in frame.conversations
            )
            notices = self._notices.on_synced(
                SyncedAccount(a.account_id, a.cursor, [to_notice(n) for n in a.notices], a.has_more)
                for a in frame.accounts
            )
            result.more = result.more or notices.more
            for message in result.delivered:
                self._emit(message)
            for event in notices.delivered:
                self._emit(event)
            if not result.more:
                for event in self._notices.go_live():
                    self._emit(event)
            for acked in result.acked:
                self._ack(acked)
            self._resolve(frame.id, result)
        elif isinstance(frame, NoticeFrame):
            self._on_notice(to_notice(frame.notice))
        elif isinstance(frame, NoticeRecalledFrame):
            self._on_notice(to_notice_recalled(frame))
        elif isinstance(frame, AlertFrame):
            self._on_alert(frame.alert)
        elif isinstance(frame, InboxSyncedFrame):
            fresh = self._alerts.on_synced(frame.cursor, frame.alerts)
            for alert in fresh:
                self._emit(alert)
            self._resolve(frame.id, (fresh, frame.has_more))
        elif isinstance(frame, InboxUpdateFrame):
            update = InboxUpdate(frame.state, frame.unread, frame.alert_ids, frame.up_to_seq, frame.id)
            if frame.id is None or not self._resolve(frame.id, update):
                self._emit(update)
        elif isinstance(frame, AccountReceiptFrame):
            account_receipt = to_account_receipt(frame)
            if frame.id is None or not self._resolve(frame.id, account_receipt):
                self._emit(account_receipt)
        elif isinstance(frame, ReceiptFrame):
            receipt = to_receipt(frame)
            if frame.id is None or not self._resolve(frame.id, receipt):
                self._emit(receipt)
        elif isinstance(frame, PongFrame):
            if frame.id is not None:
                self._resolve(frame.id, frame)
        elif isinstance(frame, ErrorFrame):
            self._on_error(frame)
        elif isinstance(frame, (TypingEvent, PresenceEvent, ContactEvent)):
            self._emit(frame)
        elif isinstance(frame, PresenceListFrame):
            if not self._resolve(frame.id, frame):  # a re-watch after a reconnect: the current state
                for info in frame.users:
                    if info.online is not None:
                        self._emit(PresenceEvent(user_id=info.user_id, online=info.online, last_seen=info.last_seen))
        elif isinstance(frame, (RmChanged, ConversationAdded, ConversationRemoved, ServiceStatus, ServiceAssigned, AgentState)):
            self._emit(frame)  # RM and service-desk events
        elif isinstance(frame, HelloFrame):
            log.debug("ignoring a repeated hello")

    def _resolve(self, frame_id: str, value: object) -> bool:
        future = self._requests.get(frame_id)
        if future is None or future.done():
            return False
        future.set_result(value)
        return True

    def _on_message(self, message: Message) -> None:
        routed = self._inbox.on_message(message)
        if routed.route is Route.YIELD:
            self._emit(message)
        elif routed.route is Route.GAP:
            log.debug("gap before %s#%d: syncing", message.conversation_id, message.seq)
            self._request_gap_sync()
        elif routed.route is Route.ACK and routed.pending is not None:
            self._ack(Acked(routed.pending, message, routed.hole))

    def _on_alert(self, alert: Alert) -> None:
        verdict = self._alerts.offer(alert)
        if verdict == "yield":
            self._emit(alert)
        elif verdict == "gap" and (self._inbox_task is None or self._inbox_task.done()):
            self._inbox_task = asyncio.create_task(self._fill_inbox_gap(), name="bankhub-client-inbox-sync")

    async def _fill_inbox_gap(self) -> None:
        try:
            await self.sync_inbox(timeout=max(self._options.request_timeout, 1.0))
        except ProtocolError as exc:
            if exc.code in ("unknown_type", "invalid_frame"):
                self._alerts_supported = False  # a hub from before alerts
            elif self._final is None:
                log.warning("inbox sync failed: %r", exc)
        except (BankhubError, TimeoutError) as exc:
            if self._final is None:
                log.warning("inbox sync failed: %r", exc)

    async def _inbox_position(self) -> int | None:
        """My inbox's last seq when connecting; None from a hub without alerts."""
        try:
            return (await self._api.unread_alerts()).last_seq
        except ApiError as exc:
            if exc.status == 404:
                self._alerts_supported = False
                return None
            raise

    def _catch_up_inbox(self) -> None:
        """On every connect: fetch the alerts that arrived while away, alongside new requests
        (it never holds up sends). Skipped right after a fresh snapshot of the inbox."""
        if self._inbox_snapshot_fresh:
            self._inbox_snapshot_fresh = False
            return
        if self._alerts_supported and self._alerts.cursor is not None and (self._inbox_task is None or self._inbox_task.done()):
            self._inbox_task = asyncio.create_task(self._fill_inbox_gap(), name="bankhub-client-inbox-sync")

    def _on_notice(self, event: Notice | NoticeRecalled) -> None:
        for out in self._notices.on_event(event):
            self._emit(out)

    async def _followed_accounts(self) -> list[FollowedAccount]:
        """The snapshot of followed accounts; none from a hub without official accounts."""
        try:
            return await self._api.my_accounts()
        except ApiError as exc:
            if exc.status == 404:
                return []
            raise

    def _ack(self, acked: Acked) -> None:
        future = self._send_futures.pop(acked.pending.key, None)
        if future is not None and not future.done():
            future.set_result(acked.message)
        if acked.hole:
            conv, seq = acked.message.conversation_id, acked.message.seq
            handle = asyncio.get_running_loop().call_later(self._options.gap_grace, self._check_hole, conv, seq)
            self._timers.add(handle)

    def _check_hole(self, conversation_id: str, seq: int) -> None:
        self._timers = {h for h in self._timers if not h.cancelled() and h.when() > asyncio.get_running_loop().time()}
        if self._final is None and self._inbox.cursors.has_hole_before(conversation_id, seq):
            self._request_gap_sync()

    def _on_error(self, frame: ErrorFrame) -> None:
        if frame.id is None:
            log.warning("server error: %s: %s", frame.code, frame.message)
            return
        entry = self._inbox.pending.by_frame(frame.id)
        if entry is not None:
            if frame.code in RETRYABLE_ERRORS:
                delay = send_retry_delay(frame.code, frame.retry_after_ms, entry.attempts)
                self._inbox.pending.retry_later(entry, time.monotonic() + delay)
                self._wake.set()
            else:
                self._inbox.pending.remove(entry)
                future = self._send_futures.pop(entry.key, None)
                if future is not None and not future.done():
                    future.set_exception(ProtocolError(frame.code, frame.message, retry_after_ms=frame.retry_after_ms))
            return
        future = self._requests.get(frame.id)
        if future is not None and not future.done():
            future.set_exception(ProtocolError(frame.code, frame.message, retry_after_ms=frame.retry_after_ms))
        else:
            log.warning("server error for frame %s: %s: %s", frame.id, frame.code, frame.message)

    def _request_gap_sync(self) -> None:
        if self._final is not None:
            return
        if self._gap_task is not None and not self._gap_task.done():
            self._gap_again = True
            return
        self._gap_task = asyncio.create_task(self._gap_sync(), name="bankhub-client-gap-sync")

    async def _gap_sync(self) -> None:
        while True:
            self._gap_again = False
            try:
                await self.sync(timeout=max(self._options.request_timeout, 1.0))
            except (BankhubError, TimeoutError) as exc:
                if self._final is not None:
                    return
                log.warning("sync to fill a gap failed: %r", exc)
            if not self._gap_again:
                return

    # --- helpers ---------------------------------------------------------------------

    def _emit(self, event: Event) -> None:
        self._events.put_nowait(event)

    def _check_usable(self) -> None:
        if self._final is not None:
            raise self._final
        if not self._started or self._hello is None:
            raise RuntimeError("the client is not connected: use Client.connect()")

    def _give_up(self, entry: PendingSend, future: asyncio.Future[Message]) -> None:
        """A waiter stops waiting; the send is dropped when it was the last one."""
        if self._send_waiters.get(entry.key, 0) > 1:
            return
        if self._inbox.pending.match(*entry.key) is entry:
            self._inbox.pending.remove(entry)
        if self._send_futures.get(entry.key) is future:
            del self._send_futures[entry.key]
        if not future.done():
            future.cancel()

    def _finish(self, error: BaseException | None, final: BaseException | None = None) -> None:
        """End the client: ``error`` is raised by events() (None: they end quietly),
        ``final`` (default ``error``) by every later call and pending send."""
        if self._final is not None:
            return
        final = final if final is not None else error
        assert final is not None
        self._final = final
        for future in self._send_futures.values():
            if not future.done():
                future.set_exception(final)
        self._send_futures.clear()
        for entry in list(self._inbox.pending):
            self._inbox.pending.remove(entry)
        for future in self._requests.values():
            if not future.done():
                future.set_exception(final)
        self._ready.set()
        self._wake.set()
        self._events.put_nowait(_End(error))
